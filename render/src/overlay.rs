//! What is drawn over a frame, computed in patient space: where other viewports' planes cut
//! this one (crosshairs), and where annotations land on this viewport and whether the plane
//! (or slab) cuts them. Annotations are kept as patient-space points, so they stay put across
//! zoom and pan and show on any plane that passes through them.

use crate::math::V3;
use crate::viewport::{CanvasPoint, Plane, Viewport};

/// A line segment on the canvas, pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// One end (x, y).
    pub a: (f64, f64),
    /// The other end.
    pub b: (f64, f64),
}

/// Where `other` cuts the plane of `vp`, clipped to the canvas; `None` when the planes are
/// parallel or the line misses the canvas.
pub fn crosshair(vp: &Viewport, other: &Plane) -> Option<Segment> {
    let n1 = vp.plane.normal();
    let n2 = other.normal();
    let dir = n1.cross(n2);
    if dir.norm() < 1e-9 {
        return None;
    }
    // A point on both planes: solve within span(n1, n2).
    let d1 = n1.dot(vp.plane.center);
    let d2 = n2.dot(other.center);
    let n1n2 = n1.dot(n2);
    let det = 1.0 - n1n2 * n1n2;
    let c1 = (d1 - d2 * n1n2) / det;
    let c2 = (d2 - d1 * n1n2) / det;
    let p = n1 * c1 + n2 * c2;
    let a = vp.patient_to_canvas(p);
    let b = vp.patient_to_canvas(p + dir);
    clip_line(
        (a.x, a.y),
        (b.x - a.x, b.y - a.y),
        f64::from(vp.width),
        f64::from(vp.height),
    )
}

/// Clips the infinite line through `p` with direction `d` to the rectangle [0,w] x [0,h].
fn clip_line(p: (f64, f64), d: (f64, f64), w: f64, h: f64) -> Option<Segment> {
    let (mut t0, mut t1) = (f64::NEG_INFINITY, f64::INFINITY);
    for (pc, dc, hi) in [(p.0, d.0, w), (p.1, d.1, h)] {
        if dc.abs() < 1e-12 {
            if pc < 0.0 || pc > hi {
                return None;
            }
        } else {
            let (a, b) = ((0.0 - pc) / dc, (hi - pc) / dc);
            t0 = t0.max(a.min(b));
            t1 = t1.min(a.max(b));
        }
    }
    (t0 < t1).then_some(Segment {
        a: (p.0 + t0 * d.0, p.1 + t0 * d.1),
        b: (p.0 + t1 * d.0, p.1 + t1 * d.1),
    })
}

/// Where an annotation point lands on `vp`, and whether it is within `half_thickness` mm of
/// the plane (shown) or not (hidden on this plane).
pub fn place(vp: &Viewport, p: V3, half_thickness: f64) -> (CanvasPoint, bool) {
    let c = vp.patient_to_canvas(p);
    let on_plane = c.depth.abs() <= half_thickness.max(1e-6);
    (c, on_plane)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::viewport::Orientation;

    #[test]
    fn orthogonal_planes_cross_through_the_centre() {
        let c = V3::new(10.0, 20.0, 30.0);
        let axial = Viewport::native(Plane::standard(Orientation::Axial, c), 200, 100, [1.0, 1.0]);
        let sagittal = Plane::standard(Orientation::Sagittal, c);
        let s = crosshair(&axial, &sagittal).unwrap();
        // The sagittal plane (x = 10) is a vertical line through the canvas centre.
        assert!(
            (s.a.0 - 100.0).abs() < 1e-9 && (s.b.0 - 100.0).abs() < 1e-9,
            "{s:?}"
        );
        assert!((s.a.1 - s.b.1).abs() > 99.0);
        assert!(
            crosshair(&axial, &Plane::standard(Orientation::Axial, c)).is_none(),
            "parallel"
        );
        let far = Plane::standard(Orientation::Sagittal, V3::new(1000.0, 0.0, 0.0));
        assert!(crosshair(&axial, &far).is_none(), "misses the canvas");
    }

    #[test]
    fn annotations_stay_put_and_hide_off_plane() {
        let c = V3::new(0.0, 0.0, 0.0);
        let vp = Viewport::native(Plane::standard(Orientation::Axial, c), 100, 100, [1.0, 1.0]);
        let mark = V3::new(10.0, 5.0, 0.0);
        let (at, shown) = place(&vp, mark, 0.5);
        assert!(shown && (at.x - 60.0).abs() < 1e-9 && (at.y - 55.0).abs() < 1e-9);
        let zoomed = Viewport {
            zoom: 2.0,
            pan: [3.0, 0.0],
            ..vp
        };
        let p =
            zoomed.canvas_to_patient(place(&zoomed, mark, 0.5).0.x, place(&zoomed, mark, 0.5).0.y);
        assert!(
            (p - mark).norm() < 1e-9,
            "same patient point after zoom and pan"
        );
        let next = Viewport {
            plane: vp.plane.translated(2.0),
            ..vp
        };
        assert!(!place(&next, mark, 0.5).1, "hidden 2 mm away");
        assert!(place(&next, mark, 2.5).1, "shown inside a 5 mm slab");
    }
}
