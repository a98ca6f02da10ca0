//! Measurements in patient units: distance (mm), angle (degrees), region statistics (area mm²;
//! mean, SD, min, max in modality units such as HU) for rectangles, ellipses and polygons
//! lying on a plane, and the point probe. Inputs are patient-space points, so a measurement
//! does not depend on zoom, pan or canvas size.

use crate::error::RenderError;
use crate::math::V3;
use crate::viewport::Plane;
use crate::volume::Volume;

/// Distance between two points, mm.
pub fn distance(a: V3, b: V3) -> f64 {
    (a - b).norm()
}

/// The angle at `vertex` between the rays to `a` and `b`, degrees (0-180).
pub fn angle(a: V3, vertex: V3, b: V3) -> Result<f64, RenderError> {
    let (u, v) = (a - vertex, b - vertex);
    let (nu, nv) = (u.norm(), v.norm());
    if nu < 1e-9 || nv < 1e-9 {
        return Err(RenderError::Measure(
            "an angle needs two arms of non-zero length".into(),
        ));
    }
    Ok((u.dot(v) / (nu * nv)).clamp(-1.0, 1.0).acos().to_degrees())
}

/// A region of interest on a plane. Points are in patient space and are projected onto the
/// plane given with them.
#[derive(Debug, Clone, PartialEq)]
pub enum Roi {
    /// The rectangle with these opposite corners, sides along the plane's row and column.
    Rectangle {
        /// One corner.
        a: V3,
        /// The opposite corner.
        b: V3,
    },
    /// An ellipse with axes along the plane's row and column.
    Ellipse {
        /// Centre.
        center: V3,
        /// Semi-axis along the row direction, mm.
        radius_row: f64,
        /// Semi-axis along the column direction, mm.
        radius_col: f64,
    },
    /// A closed polygon (at least 3 vertices).
    Polygon(Vec<V3>),
}

/// Statistics of a region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiStats {
    /// Area on the plane, mm².
    pub area_mm2: f64,
    /// Mean modality value.
    pub mean: f64,
    /// Standard deviation (population).
    pub sd: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// How many samples the statistics come from.
    pub samples: usize,
}

/// The value under a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// The nearest voxel's indices.
    pub voxel: [usize; 3],
    /// Its stored value.
    pub stored: i16,
    /// Its modality value.
    pub value: f64,
}

/// The nearest voxel to `p` and its value; `None` outside the volume.
pub fn probe(volume: &Volume, p: V3) -> Option<Probe> {
    let v = volume.geometry().patient_to_voxel(p);
    let idx = [v.x, v.y, v.z].map(|c| (c + 0.5).floor());
    let dims = volume.geometry().dims();
    if idx
        .iter()
        .zip(dims)
        .any(|(i, n)| *i < 0.0 || *i >= n as f64)
    {
        return None;
    }
    let voxel = idx.map(|i| i as usize);
    let stored = volume.get(voxel[0], voxel[1], voxel[2])?;
    Some(Probe {
        voxel,
        stored,
        value: volume.rescale().apply(f64::from(stored)),
    })
}

/// Area and statistics of `roi` on `plane`. Values are sampled at the nearest voxel on a grid
/// as fine as the finest voxel spacing, starting at the region's top-left bound and including
/// its edges (a rectangle drawn between two voxel centres takes exactly the voxels it spans).
pub fn roi_stats(volume: &Volume, plane: &Plane, roi: &Roi) -> Result<RoiStats, RenderError> {
    let to2 = |p: V3| {
        let d = p - plane.center;
        (d.dot(plane.row), d.dot(plane.col))
    };
    let shape = match roi {
        Roi::Rectangle { a, b } => {
            let ((ua, va), (ub, vb)) = (to2(*a), to2(*b));
            Shape::Rect {
                u0: ua.min(ub),
                u1: ua.max(ub),
                v0: va.min(vb),
                v1: va.max(vb),
            }
        }
        Roi::Ellipse {
            center,
            radius_row,
            radius_col,
        } => {
            if !(*radius_row > 0.0 && *radius_col > 0.0) {
                return Err(RenderError::Measure(
                    "ellipse radii must be positive".into(),
                ));
            }
            let (u, v) = to2(*center);
            Shape::Ellipse {
                u,
                v,
                a: *radius_row,
                b: *radius_col,
            }
        }
        Roi::Polygon(points) => {
            if points.len() < 3 {
                return Err(RenderError::Measure(format!(
                    "a polygon needs 3 or more points, got {}",
                    points.len()
                )));
            }
            Shape::Polygon(points.iter().map(|p| to2(*p)).collect())
        }
    };
    let area = shape.area();
    if area.is_nan() || area <= 0.0 {
        return Err(RenderError::Measure("the region has no area".into()));
    }
    let (u0, u1, v0, v1) = shape.bounds();
    let step = volume
        .geometry()
        .spacing()
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    let (nu, nv) = (
        ((u1 - u0) / step + 1e-9).floor() as usize + 1,
        ((v1 - v0) / step + 1e-9).floor() as usize + 1,
    );
    if nu.saturating_mul(nv) > 64 << 20 {
        return Err(RenderError::Measure("the region is too large".into()));
    }
    let (mut n, mut sum, mut sum2, mut min, mut max) =
        (0usize, 0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY);
    for iv in 0..nv {
        let v = v0 + iv as f64 * step;
        for iu in 0..nu {
            let u = u0 + iu as f64 * step;
            if !shape.contains(u, v) {
                continue;
            }
            let p = plane.center + plane.row * u + plane.col * v;
            if let Some(pr) = probe(volume, p) {
                n += 1;
                sum += pr.value;
                sum2 += pr.value * pr.value;
                min = min.min(pr.value);
                max = max.max(pr.value);
            }
        }
    }
    if n == 0 {
        return Err(RenderError::Measure(
            "the region holds no voxel of the volume".into(),
        ));
    }
    let mean = sum / n as f64;
    let sd = (sum2 / n as f64 - mean * mean).max(0.0).sqrt();
    Ok(RoiStats {
        area_mm2: area,
        mean,
        sd,
        min,
        max,
        samples: n,
    })
}

enum Shape {
    Rect { u0: f64, u1: f64, v0: f64, v1: f64 },
    Ellipse { u: f64, v: f64, a: f64, b: f64 },
    Polygon(Vec<(f64, f64)>),
}

impl Shape {
    fn area(&self) -> f64 {
        match self {
            Self::Rect { u0, u1, v0, v1 } => (u1 - u0) * (v1 - v0),
            Self::Ellipse { a, b, .. } => std::f64::consts::PI * a * b,
            Self::Polygon(p) => {
                let twice: f64 = (0..p.len())
                    .map(|i| {
                        let (a, b) = (p[i], p[(i + 1) % p.len()]);
                        a.0 * b.1 - b.0 * a.1
                    })
                    .sum();
                twice.abs() / 2.0
            }
        }
    }

    fn bounds(&self) -> (f64, f64, f64, f64) {
        match self {
            Self::Rect { u0, u1, v0, v1 } => (*u0, *u1, *v0, *v1),
            Self::Ellipse { u, v, a, b } => (u - a, u + a, v - b, v + b),
            Self::Polygon(p) => p.iter().fold(
                (
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                ),
                |(a, b, c, d), (u, v)| (a.min(*u), b.max(*u), c.min(*v), d.max(*v)),
            ),
        }
    }

    fn contains(&self, x: f64, y: f64) -> bool {
        match self {
            Self::Rect { u0, u1, v0, v1 } => (*u0..=*u1).contains(&x) && (*v0..=*v1).contains(&y),
            Self::Ellipse { u, v, a, b } => ((x - u) / a).powi(2) + ((y - v) / b).powi(2) <= 1.0,
            Self::Polygon(p) => {
                // Even-odd rule.
                let mut inside = false;
                let mut j = p.len() - 1;
                for i in 0..p.len() {
                    let ((xi, yi), (xj, yj)) = (p[i], p[j]);
                    if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                        inside = !inside;
                    }
                    j = i;
                }
                inside
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::viewport::Orientation;
    use crate::volume::{Geometry, Rescale};

    fn constant(value: i16) -> Volume {
        let g = Geometry::axis_aligned([100, 100, 3], V3::default(), [0.5, 0.5, 2.0]).unwrap();
        Volume::new(
            g,
            vec![value; 30_000],
            Rescale {
                slope: 1.0,
                intercept: -1024.0,
            },
        )
        .unwrap()
    }

    #[test]
    fn distances_and_angles() {
        assert_eq!(
            distance(V3::new(0.0, 0.0, 0.0), V3::new(3.0, 4.0, 0.0)),
            5.0
        );
        let a = angle(
            V3::new(1.0, 0.0, 0.0),
            V3::default(),
            V3::new(0.0, 2.0, 0.0),
        )
        .unwrap();
        assert!((a - 90.0).abs() < 1e-12);
        assert!(angle(V3::default(), V3::default(), V3::new(1.0, 0.0, 0.0)).is_err());
    }

    #[test]
    fn roi_areas_and_values() {
        let v = constant(1064);
        let plane = Plane::standard(Orientation::Axial, V3::new(25.0, 25.0, 2.0));
        let rect = roi_stats(
            &v,
            &plane,
            &Roi::Rectangle {
                a: V3::new(10.0, 10.0, 2.0),
                b: V3::new(20.0, 15.0, 2.0),
            },
        )
        .unwrap();
        assert!((rect.area_mm2 - 50.0).abs() < 1e-9);
        assert_eq!(
            (rect.mean, rect.sd, rect.min, rect.max),
            (40.0, 0.0, 40.0, 40.0)
        );
        assert_eq!(
            rect.samples,
            21 * 11,
            "a 10x5 mm rectangle at 0.5 mm: 21x11 samples, edges included"
        );
        let e = roi_stats(
            &v,
            &plane,
            &Roi::Ellipse {
                center: V3::new(25.0, 25.0, 2.0),
                radius_row: 5.0,
                radius_col: 2.0,
            },
        )
        .unwrap();
        assert!((e.area_mm2 - std::f64::consts::PI * 10.0).abs() < 1e-9);
        let tri = Roi::Polygon(vec![
            V3::new(10.0, 10.0, 2.0),
            V3::new(20.0, 10.0, 2.0),
            V3::new(10.0, 20.0, 2.0),
        ]);
        let t = roi_stats(&v, &plane, &tri).unwrap();
        assert!((t.area_mm2 - 50.0).abs() < 1e-9);
        assert!((200..=240).contains(&t.samples), "{}", t.samples);
        assert!(roi_stats(&v, &plane, &Roi::Polygon(vec![V3::default(); 2])).is_err());
        let outside = Roi::Rectangle {
            a: V3::new(500.0, 500.0, 2.0),
            b: V3::new(510.0, 510.0, 2.0),
        };
        assert!(roi_stats(&v, &plane, &outside).is_err());
    }

    #[test]
    fn probe_reads_modality_values() {
        let v = constant(1024);
        let p = probe(&v, V3::new(1.0, 1.2, 4.1)).unwrap();
        assert_eq!((p.voxel, p.value), ([2, 2, 2], 0.0));
        assert!(probe(&v, V3::new(-5.0, 0.0, 0.0)).is_none());
    }
}
