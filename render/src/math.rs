//! Small 3-vector and 3x3 matrix arithmetic in f64 for patient-space geometry (millimetres,
//! DICOM patient coordinates: +x left, +y posterior, +z head).

use std::ops::{Add, Mul, Neg, Sub};

/// A point or direction in patient space (mm), or a voxel coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct V3 {
    /// x
    pub x: f64,
    /// y
    pub y: f64,
    /// z
    pub z: f64,
}

impl V3 {
    /// A vector from its components.
    pub const fn new(x: f64, y: f64, z: f64) -> Self {
        Self { x, y, z }
    }

    /// Dot product.
    pub fn dot(self, o: Self) -> f64 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }

    /// Cross product.
    pub fn cross(self, o: Self) -> Self {
        Self::new(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }

    /// Euclidean length.
    pub fn norm(self) -> f64 {
        self.dot(self).sqrt()
    }

    /// The unit vector in this direction; `None` for (near) zero vectors.
    pub fn normalized(self) -> Option<Self> {
        let n = self.norm();
        (n > 1e-12 && n.is_finite()).then(|| self * (1.0 / n))
    }

    /// Components as an array.
    pub fn to_array(self) -> [f64; 3] {
        [self.x, self.y, self.z]
    }

    /// Whether every component is finite.
    pub fn is_finite(self) -> bool {
        self.x.is_finite() && self.y.is_finite() && self.z.is_finite()
    }

    /// Rotates this vector by `angle` radians about the unit `axis` (Rodrigues).
    pub fn rotated(self, axis: Self, angle: f64) -> Self {
        let (s, c) = angle.sin_cos();
        self * c + axis.cross(self) * s + axis * (axis.dot(self) * (1.0 - c))
    }
}

impl From<[f64; 3]> for V3 {
    fn from(a: [f64; 3]) -> Self {
        Self::new(a[0], a[1], a[2])
    }
}

impl Add for V3 {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self::new(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}

impl Sub for V3 {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self::new(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}

impl Mul<f64> for V3 {
    type Output = Self;
    fn mul(self, s: f64) -> Self {
        Self::new(self.x * s, self.y * s, self.z * s)
    }
}

impl Neg for V3 {
    type Output = Self;
    fn neg(self) -> Self {
        Self::new(-self.x, -self.y, -self.z)
    }
}

/// A 3x3 matrix given by its columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct M3 {
    /// The columns.
    pub cols: [V3; 3],
}

impl M3 {
    /// Matrix times vector.
    pub fn mul_vec(&self, v: V3) -> V3 {
        self.cols[0] * v.x + self.cols[1] * v.y + self.cols[2] * v.z
    }

    /// Determinant.
    pub fn det(&self) -> f64 {
        self.cols[0].dot(self.cols[1].cross(self.cols[2]))
    }

    /// The inverse, or `None` when the matrix is (near) singular relative to its scale.
    pub fn inverse(&self) -> Option<Self> {
        let [a, b, c] = self.cols;
        let det = self.det();
        let scale = a.norm() * b.norm() * c.norm();
        if !det.is_finite() || det.abs() <= 1e-9 * scale {
            return None;
        }
        // Rows of the inverse are the cross products of pairs of columns over the determinant.
        let r0 = b.cross(c) * (1.0 / det);
        let r1 = c.cross(a) * (1.0 / det);
        let r2 = a.cross(b) * (1.0 / det);
        Some(Self {
            cols: [
                V3::new(r0.x, r1.x, r2.x),
                V3::new(r0.y, r1.y, r2.y),
                V3::new(r0.z, r1.z, r2.z),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_undoes_the_matrix() {
        let m = M3 {
            cols: [
                V3::new(0.5, 0.0, 0.1),
                V3::new(0.0, 0.45, 0.0),
                V3::new(0.0, 0.3, 1.2),
            ],
        };
        let inv = m.inverse().unwrap();
        let v = V3::new(3.0, -7.0, 11.0);
        let back = inv.mul_vec(m.mul_vec(v));
        assert!((back - v).norm() < 1e-12, "{back:?}");
        let singular = M3 {
            cols: [
                V3::new(1.0, 0.0, 0.0),
                V3::new(2.0, 0.0, 0.0),
                V3::new(0.0, 0.0, 1.0),
            ],
        };
        assert!(singular.inverse().is_none());
    }

    #[test]
    fn rotation_about_z() {
        let r = V3::new(1.0, 0.0, 0.0).rotated(V3::new(0.0, 0.0, 1.0), std::f64::consts::FRAC_PI_2);
        assert!((r - V3::new(0.0, 1.0, 0.0)).norm() < 1e-12);
    }
}
