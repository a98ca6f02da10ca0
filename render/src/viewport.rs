//! Viewports: a plane through patient space (centre, row and column directions) and how it
//! lands on an output canvas (size, mm per pixel, zoom, pan, in-plane rotation, flips). The
//! mapping both ways (canvas pixel <-> patient point) is what MPR, annotations and crosshairs
//! share.

use crate::error::RenderError;
use crate::math::V3;
use crate::volume::Geometry;

/// A plane in patient space: `row` points to the canvas's right, `col` to its bottom; both unit
/// and perpendicular.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plane {
    /// A point of the plane shown at the canvas centre (before pan).
    pub center: V3,
    /// Unit direction to the right on the canvas.
    pub row: V3,
    /// Unit direction downwards on the canvas.
    pub col: V3,
}

/// Standard orientations, in the radiological display convention (patient's right on the
/// canvas's left; anterior up; head up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// Looking from the feet: right = patient left (+x), down = posterior (+y).
    Axial,
    /// Looking from the front: right = patient left (+x), down = feet (-z).
    Coronal,
    /// Looking from the patient's left: right = posterior (+y), down = feet (-z).
    Sagittal,
}

impl Plane {
    /// A plane from a centre and two directions, made orthonormal (`col` is corrected to be
    /// perpendicular to `row`).
    pub fn new(center: V3, row: V3, col: V3) -> Result<Self, RenderError> {
        let bad = |why: &str| RenderError::View {
            field: "plane",
            reason: why.to_owned(),
        };
        if !center.is_finite() {
            return Err(bad("centre is not finite"));
        }
        let row = row
            .normalized()
            .ok_or_else(|| bad("row direction has no length"))?;
        let col = (col - row * row.dot(col))
            .normalized()
            .ok_or_else(|| bad("column direction is parallel to the row"))?;
        Ok(Self { center, row, col })
    }

    /// A standard orientation through `center`.
    pub fn standard(o: Orientation, center: V3) -> Self {
        let (row, col) = match o {
            Orientation::Axial => (V3::new(1.0, 0.0, 0.0), V3::new(0.0, 1.0, 0.0)),
            Orientation::Coronal => (V3::new(1.0, 0.0, 0.0), V3::new(0.0, 0.0, -1.0)),
            Orientation::Sagittal => (V3::new(0.0, 1.0, 0.0), V3::new(0.0, 0.0, -1.0)),
        };
        Self { center, row, col }
    }

    /// The unit normal (`row x col`, pointing away from the viewer).
    pub fn normal(&self) -> V3 {
        self.row.cross(self.col)
    }

    /// The plane moved `mm` along its normal.
    pub fn translated(&self, mm: f64) -> Self {
        Self {
            center: self.center + self.normal() * mm,
            ..*self
        }
    }

    /// The plane tilted by `degrees` about an axis through its centre (an oblique view).
    pub fn rotated(&self, axis: V3, degrees: f64) -> Result<Self, RenderError> {
        let axis = axis.normalized().ok_or_else(|| RenderError::View {
            field: "axis",
            reason: "has no length".into(),
        })?;
        let a = degrees.to_radians();
        Self::new(
            self.center,
            self.row.rotated(axis, a),
            self.col.rotated(axis, a),
        )
    }

    /// Signed distance (mm) of `p` from the plane along the normal.
    pub fn distance(&self, p: V3) -> f64 {
        (p - self.center).dot(self.normal())
    }
}

/// How a plane lands on a canvas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    /// Canvas width in pixels.
    pub width: u32,
    /// Canvas height in pixels.
    pub height: u32,
    /// The plane shown.
    pub plane: Plane,
    /// Millimetres per canvas pixel at zoom 1, horizontally and vertically (equal for a
    /// correct aspect; unequal only for native reformats).
    pub spacing: [f64; 2],
    /// Magnification; 2 shows things twice as large.
    pub zoom: f64,
    /// Image displacement on the canvas in mm (right, down).
    pub pan: [f64; 2],
    /// Clockwise rotation of the image on the canvas, degrees.
    pub rotation: f64,
    /// Mirror left-right.
    pub flip_h: bool,
    /// Mirror top-bottom.
    pub flip_v: bool,
}

/// A canvas position (pixels, origin at the top-left corner of the top-left pixel) and the
/// distance (mm) of the patient point from the plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanvasPoint {
    /// Horizontal pixel coordinate.
    pub x: f64,
    /// Vertical pixel coordinate.
    pub y: f64,
    /// Signed distance from the plane along its normal, mm.
    pub depth: f64,
}

impl Viewport {
    /// A viewport of `width` x `height` showing `plane` with square pixels sized so the whole
    /// volume fits.
    pub fn fit(
        plane: Plane,
        geometry: &Geometry,
        width: u32,
        height: u32,
    ) -> Result<Self, RenderError> {
        let (mut w, mut h) = (0f64, 0f64);
        for c in geometry.corners() {
            let d = c - plane.center;
            w = w.max(2.0 * d.dot(plane.row).abs());
            h = h.max(2.0 * d.dot(plane.col).abs());
        }
        // Half a voxel beyond the outer centres on each side.
        let pad = geometry.spacing().into_iter().fold(0.0, f64::max);
        let s = ((w + pad) / f64::from(width.max(1))).max((h + pad) / f64::from(height.max(1)));
        let vp = Self::native(plane, width, height, [s, s]);
        vp.validate()?;
        Ok(vp)
    }

    /// A viewport with the given mm per pixel and no zoom, pan, rotation or flips.
    pub fn native(plane: Plane, width: u32, height: u32, spacing: [f64; 2]) -> Self {
        Self {
            width,
            height,
            plane,
            spacing,
            zoom: 1.0,
            pan: [0.0, 0.0],
            rotation: 0.0,
            flip_h: false,
            flip_v: false,
        }
    }

    /// Checks sizes and factors.
    pub fn validate(&self) -> Result<(), RenderError> {
        let bad = |field, reason: String| Err(RenderError::View { field, reason });
        if self.width == 0 || self.height == 0 || self.width > 8192 || self.height > 8192 {
            return bad(
                "size",
                format!("{}x{}: each side must be 1-8192", self.width, self.height),
            );
        }
        if !(self.zoom.is_finite() && self.zoom > 0.0) {
            return bad("zoom", format!("{} must be positive", self.zoom));
        }
        if !self.spacing.iter().all(|s| s.is_finite() && *s > 0.0) {
            return bad("spacing", format!("{:?} must be positive", self.spacing));
        }
        if !(self.pan.iter().all(|p| p.is_finite()) && self.rotation.is_finite()) {
            return bad("pan/rotation", "must be finite".into());
        }
        Ok(())
    }

    /// Millimetres per canvas pixel after zoom.
    pub fn pixel_mm(&self) -> [f64; 2] {
        [self.spacing[0] / self.zoom, self.spacing[1] / self.zoom]
    }

    /// The patient-space displacement of one canvas pixel right and one pixel down, and the
    /// patient point at the centre of pixel (0, 0).
    pub fn basis(&self) -> (V3, V3, V3) {
        let o = self.canvas_to_patient(0.5, 0.5);
        let dx = self.canvas_to_patient(1.5, 0.5) - o;
        let dy = self.canvas_to_patient(0.5, 1.5) - o;
        (o, dx, dy)
    }

    /// The patient point under canvas position (x, y) (pixel centres are at +0.5).
    pub fn canvas_to_patient(&self, x: f64, y: f64) -> V3 {
        let [mx, my] = self.pixel_mm();
        let sx = (x - f64::from(self.width) / 2.0) * mx - self.pan[0];
        let sy = (y - f64::from(self.height) / 2.0) * my - self.pan[1];
        let (fx, fy) = (
            if self.flip_h { -sx } else { sx },
            if self.flip_v { -sy } else { sy },
        );
        let (s, c) = (-self.rotation.to_radians()).sin_cos();
        let (ix, iy) = (fx * c - fy * s, fx * s + fy * c);
        self.plane.center + self.plane.row * ix + self.plane.col * iy
    }

    /// Where patient point `p` lands on the canvas (projected along the normal).
    pub fn patient_to_canvas(&self, p: V3) -> CanvasPoint {
        let d = p - self.plane.center;
        let (ix, iy) = (d.dot(self.plane.row), d.dot(self.plane.col));
        let (s, c) = self.rotation.to_radians().sin_cos();
        let (fx, fy) = (ix * c - iy * s, ix * s + iy * c);
        let (sx, sy) = (
            if self.flip_h { -fx } else { fx },
            if self.flip_v { -fy } else { fy },
        );
        let [mx, my] = self.pixel_mm();
        CanvasPoint {
            x: (sx + self.pan[0]) / mx + f64::from(self.width) / 2.0,
            y: (sy + self.pan[1]) / my + f64::from(self.height) / 2.0,
            depth: self.plane.distance(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canvas_and_patient_round_trip_with_every_transform() {
        let plane = Plane::new(
            V3::new(10.0, -20.0, 5.0),
            V3::new(1.0, 0.2, 0.0),
            V3::new(0.0, 0.3, -1.0),
        )
        .unwrap();
        let vp = Viewport {
            zoom: 1.7,
            pan: [12.0, -3.5],
            rotation: 33.0,
            flip_h: true,
            flip_v: false,
            ..Viewport::native(plane, 300, 200, [0.5, 0.5])
        };
        for (x, y) in [(0.0, 0.0), (150.0, 100.0), (299.5, 12.25)] {
            let p = vp.canvas_to_patient(x, y);
            let back = vp.patient_to_canvas(p);
            assert!(
                (back.x - x).abs() < 1e-9 && (back.y - y).abs() < 1e-9,
                "{x},{y} -> {back:?}"
            );
            assert!(back.depth.abs() < 1e-9);
        }
    }

    #[test]
    fn zoom_and_pan_move_the_image() {
        let plane = Plane::standard(Orientation::Axial, V3::default());
        let vp = Viewport::native(plane, 100, 100, [1.0, 1.0]);
        assert_eq!(vp.canvas_to_patient(50.0, 50.0), V3::default());
        let zoomed = Viewport { zoom: 2.0, ..vp };
        assert_eq!(zoomed.canvas_to_patient(60.0, 50.0), V3::new(5.0, 0.0, 0.0));
        let panned = Viewport {
            pan: [10.0, 0.0],
            ..vp
        };
        assert_eq!(
            panned.canvas_to_patient(60.0, 50.0),
            V3::default(),
            "panning right by 10 mm"
        );
        let rotated = Viewport {
            rotation: 90.0,
            ..vp
        };
        let p = rotated.canvas_to_patient(60.0, 50.0);
        assert!((p - V3::new(0.0, -10.0, 0.0)).norm() < 1e-9, "{p:?}");
    }

    #[test]
    fn refuses_bad_views() {
        let plane = Plane::standard(Orientation::Axial, V3::default());
        assert!(
            Viewport {
                zoom: 0.0,
                ..Viewport::native(plane, 10, 10, [1.0; 2])
            }
            .validate()
            .is_err()
        );
        assert!(Viewport::native(plane, 0, 10, [1.0; 2]).validate().is_err());
        assert!(
            Plane::new(
                V3::default(),
                V3::new(1.0, 0.0, 0.0),
                V3::new(2.0, 0.0, 0.0)
            )
            .is_err()
        );
    }
}
