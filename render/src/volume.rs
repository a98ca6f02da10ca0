//! Volumes: a grid of stored values (i16) with its patient-space geometry and modality
//! rescale, and sampling at voxel coordinates (nearest, trilinear). Sheared grids (gantry tilt)
//! are described exactly by non-orthogonal axes.

use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use crate::error::RenderError;
use crate::math::{M3, V3};

/// Where each voxel is in patient space: `patient = origin + i*axes[0] + j*axes[1] + k*axes[2]`
/// for voxel indices (i column, j row, k slice).
#[derive(Debug, Clone, PartialEq)]
pub struct Geometry {
    dims: [usize; 3],
    origin: V3,
    axes: [V3; 3],
    to_voxel: M3,
}

impl Geometry {
    /// A geometry from dimensions (columns, rows, slices), the patient position of voxel
    /// (0, 0, 0), and the patient displacement of one step along each index. For DICOM: axis 0 is
    /// the row direction cosine times the column spacing, axis 1 the column direction cosine
    /// times the row spacing, axis 2 the step from one slice's position to the next (not
    /// necessarily normal to the slices: gantry tilt).
    pub fn new(dims: [usize; 3], origin: V3, axes: [V3; 3]) -> Result<Self, RenderError> {
        if dims.contains(&0) {
            return Err(RenderError::Geometry(format!(
                "dimensions {dims:?} contain 0"
            )));
        }
        if !origin.is_finite() || axes.iter().any(|a| !a.is_finite()) {
            return Err(RenderError::Geometry(
                "origin or axes are not finite".into(),
            ));
        }
        let m = M3 { cols: axes };
        let to_voxel = m.inverse().ok_or_else(|| {
            RenderError::Geometry(format!(
                "axes {axes:?} are degenerate (zero length or coplanar)"
            ))
        })?;
        Ok(Self {
            dims,
            origin,
            axes,
            to_voxel,
        })
    }

    /// An axis-aligned geometry: spacing (mm) along x, y, z, origin at `origin`.
    pub fn axis_aligned(
        dims: [usize; 3],
        origin: V3,
        spacing: [f64; 3],
    ) -> Result<Self, RenderError> {
        Self::new(
            dims,
            origin,
            [
                V3::new(spacing[0], 0.0, 0.0),
                V3::new(0.0, spacing[1], 0.0),
                V3::new(0.0, 0.0, spacing[2]),
            ],
        )
    }

    /// Columns, rows, slices.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// Patient position of voxel (0, 0, 0).
    pub fn origin(&self) -> V3 {
        self.origin
    }

    /// Patient displacement per index step.
    pub fn axes(&self) -> [V3; 3] {
        self.axes
    }

    /// Spacing (mm) along each index.
    pub fn spacing(&self) -> [f64; 3] {
        self.axes.map(V3::norm)
    }

    /// Unit normal of the slices (row direction x column direction).
    pub fn slice_normal(&self) -> V3 {
        self.axes[0]
            .cross(self.axes[1])
            .normalized()
            .unwrap_or(V3::new(0.0, 0.0, 1.0))
    }

    /// Distance (mm) between consecutive slices measured along the slice normal.
    pub fn slice_spacing(&self) -> f64 {
        self.axes[2].dot(self.slice_normal()).abs()
    }

    /// Whether the slice step is not normal to the slices (gantry tilt), in degrees.
    pub fn shear_degrees(&self) -> f64 {
        let step = self.axes[2].norm();
        if step == 0.0 {
            return 0.0;
        }
        (self.slice_spacing() / step)
            .clamp(-1.0, 1.0)
            .acos()
            .to_degrees()
    }

    /// Patient position of a (fractional) voxel coordinate.
    pub fn voxel_to_patient(&self, v: V3) -> V3 {
        self.origin + self.axes[0] * v.x + self.axes[1] * v.y + self.axes[2] * v.z
    }

    /// Voxel coordinate of a patient position.
    pub fn patient_to_voxel(&self, p: V3) -> V3 {
        self.to_voxel.mul_vec(p - self.origin)
    }

    /// The voxel-space displacement of a patient-space displacement.
    pub fn patient_dir_to_voxel(&self, d: V3) -> V3 {
        self.to_voxel.mul_vec(d)
    }

    /// Patient position of the centre of the grid.
    pub fn center(&self) -> V3 {
        let [nx, ny, nz] = self.dims.map(|n| (n as f64 - 1.0) / 2.0);
        self.voxel_to_patient(V3::new(nx, ny, nz))
    }

    /// The 8 corners of the grid (voxel centres at the extremes) in patient space.
    pub fn corners(&self) -> [V3; 8] {
        let [nx, ny, nz] = self.dims.map(|n| n as f64 - 1.0);
        std::array::from_fn(|c| {
            let v = V3::new(
                if c & 1 == 0 { 0.0 } else { nx },
                if c & 2 == 0 { 0.0 } else { ny },
                if c & 4 == 0 { 0.0 } else { nz },
            );
            self.voxel_to_patient(v)
        })
    }

    /// Spacing (mm) between samples when stepping through the grid along unit direction `dir`:
    /// the finest voxel step projected on it, so no voxel is skipped.
    pub fn step_along(&self, dir: V3) -> f64 {
        let v = self.patient_dir_to_voxel(dir);
        let largest = v.x.abs().max(v.y.abs()).max(v.z.abs());
        if largest > 0.0 {
            1.0 / largest
        } else {
            self.spacing().into_iter().fold(f64::INFINITY, f64::min)
        }
    }
}

/// The modality LUT as a linear rescale: `value = stored * slope + intercept` (HU for CT).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rescale {
    /// Rescale Slope.
    pub slope: f64,
    /// Rescale Intercept.
    pub intercept: f64,
}

impl Default for Rescale {
    fn default() -> Self {
        Self {
            slope: 1.0,
            intercept: 0.0,
        }
    }
}

impl Rescale {
    /// Modality value of a stored value.
    pub fn apply(&self, stored: f64) -> f64 {
        stored * self.slope + self.intercept
    }
}

/// A volume of stored values with geometry and rescale. Cheap to clone (the voxels are shared),
/// so one copy serves every viewer.
#[derive(Debug, Clone)]
pub struct Volume {
    geometry: Geometry,
    voxels: Arc<[i16]>,
    rescale: Rescale,
    /// The same voxels with j fastest (see [`Volume::j_fastest`]), built on first need and
    /// shared by clones.
    j_fastest: Arc<OnceLock<Box<[i16]>>>,
}

impl Volume {
    /// A volume; `voxels` are in index order i fastest, then j, then k.
    pub fn new(
        geometry: Geometry,
        voxels: impl Into<Arc<[i16]>>,
        rescale: Rescale,
    ) -> Result<Self, RenderError> {
        let voxels = voxels.into();
        let [nx, ny, nz] = geometry.dims();
        let expected = nx
            .checked_mul(ny)
            .and_then(|n| n.checked_mul(nz))
            .ok_or_else(|| RenderError::Geometry("dimensions overflow".into()))?;
        if voxels.len() != expected {
            return Err(RenderError::DataSize {
                expected,
                got: voxels.len(),
            });
        }
        if !(rescale.slope.is_finite() && rescale.slope != 0.0 && rescale.intercept.is_finite()) {
            return Err(RenderError::Geometry(format!(
                "rescale {rescale:?} is not usable"
            )));
        }
        crate::pages::prefer_huge_pages(&voxels);
        Ok(Self {
            geometry,
            voxels,
            rescale,
            j_fastest: Arc::default(),
        })
    }

    /// The geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The stored values, i fastest.
    pub fn voxels(&self) -> &[i16] {
        &self.voxels
    }

    /// The shared voxel buffer (what caches key on: one copy serves every viewer).
    pub fn voxels_arc(&self) -> Arc<[i16]> {
        Arc::clone(&self.voxels)
    }

    /// The rescale to modality units.
    pub fn rescale(&self) -> Rescale {
        self.rescale
    }

    /// Bytes held by the voxels.
    pub fn byte_size(&self) -> usize {
        self.voxels.len() * size_of::<i16>()
    }

    /// Bytes the volume may come to hold: its voxels, and the j-fastest copy that the first
    /// sagittal view builds (what a cache should budget).
    pub fn byte_budget(&self) -> usize {
        2 * self.byte_size()
    }

    /// Whether the j-fastest copy has been built.
    pub fn has_j_fastest(&self) -> bool {
        self.j_fastest.get().is_some()
    }

    /// The voxels with j fastest, then i, then k (voxel (i, j, k) at `j + ny * (i + nx * k)`).
    /// A sagittal view's canvas rows run along j: in this order each reads a contiguous run,
    /// where in the stored order every voxel is a cache line of its own (a 512x512x140
    /// sagittal plane touches 72,000 lines). Built by the first call, slice by slice in
    /// parallel, then kept: it doubles the volume's memory ([`Volume::byte_budget`]).
    pub fn j_fastest(&self) -> &[i16] {
        self.j_fastest.get_or_init(|| {
            let [nx, ny, _] = self.geometry.dims();
            let slice = nx * ny;
            let mut out = vec![0i16; self.voxels.len()];
            // Advised before it is written: its pages come as 2 MiB pages as they are written.
            crate::pages::prefer_huge_pages(&out);
            // Blocks of 32x32 keep both the reads and the writes of a block in cache.
            const B: usize = 32;
            out.par_chunks_mut(slice.max(1))
                .zip(self.voxels.par_chunks(slice.max(1)))
                .for_each(|(dst, src)| {
                    for jb in (0..ny).step_by(B) {
                        for ib in (0..nx).step_by(B) {
                            for i in ib..(ib + B).min(nx) {
                                for j in jb..(jb + B).min(ny) {
                                    dst[j + ny * i] = src[i + nx * j];
                                }
                            }
                        }
                    }
                });
            out.into_boxed_slice()
        })
    }

    /// The stored value at integer indices, if inside.
    pub fn get(&self, i: usize, j: usize, k: usize) -> Option<i16> {
        let [nx, ny, nz] = self.geometry.dims();
        (i < nx && j < ny && k < nz).then(|| self.voxels[i + nx * (j + ny * k)])
    }

    /// Nearest-voxel sample at a voxel coordinate; `None` outside the grid (which extends half a
    /// voxel beyond the outer voxel centres).
    #[inline]
    pub fn sample_nearest(&self, v: V3) -> Option<i16> {
        let [nx, ny, nz] = self.geometry.dims();
        let i = round_index(v.x, nx)?;
        let j = round_index(v.y, ny)?;
        let k = round_index(v.z, nz)?;
        Some(self.voxels[i + nx * (j + ny * k)])
    }

    /// Trilinear sample (stored units) at a voxel coordinate; `None` outside the grid. Within
    /// the outer half voxel the edge value is extended.
    #[inline]
    pub fn sample_trilinear(&self, v: V3) -> Option<f32> {
        let [nx, ny, nz] = self.geometry.dims();
        let (i0, i1, fx) = lerp_index(v.x, nx)?;
        let (j0, j1, fy) = lerp_index(v.y, ny)?;
        let (k0, k1, fz) = lerp_index(v.z, nz)?;
        let d = &self.voxels;
        let at = |i: usize, j: usize, k: usize| f32::from(d[i + nx * (j + ny * k)]);
        let c00 = at(i0, j0, k0) + (at(i1, j0, k0) - at(i0, j0, k0)) * fx;
        let c10 = at(i0, j1, k0) + (at(i1, j1, k0) - at(i0, j1, k0)) * fx;
        let c01 = at(i0, j0, k1) + (at(i1, j0, k1) - at(i0, j0, k1)) * fx;
        let c11 = at(i0, j1, k1) + (at(i1, j1, k1) - at(i0, j1, k1)) * fx;
        let c0 = c00 + (c10 - c00) * fy;
        let c1 = c01 + (c11 - c01) * fy;
        Some(c0 + (c1 - c0) * fz)
    }
}

/// Index of the nearest voxel centre, if `x` lies within [-0.5, n - 0.5).
#[inline]
fn round_index(x: f64, n: usize) -> Option<usize> {
    let r = (x + 0.5).floor();
    (r >= 0.0 && r < n as f64).then_some(r as usize)
}

/// The two indices around `x` and the fraction between them, with the outer half voxel
/// clamped to the edge.
#[inline]
fn lerp_index(x: f64, n: usize) -> Option<(usize, usize, f32)> {
    let last = n as f64 - 1.0;
    if !(x >= -0.5 && x < last + 0.5) {
        return None;
    }
    let c = x.clamp(0.0, last);
    let i0 = c.floor();
    let f = (c - i0) as f32;
    let i0 = i0 as usize;
    Some((i0, (i0 + 1).min(n - 1), f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Volume {
        let g = Geometry::axis_aligned([4, 3, 2], V3::default(), [1.0, 1.0, 1.0]).unwrap();
        let data: Vec<i16> = (0..24).collect();
        Volume::new(g, data, Rescale::default()).unwrap()
    }

    /// The j-fastest copy holds every voxel at `j + ny * (i + nx * k)`, on a grid whose sides
    /// are not multiples of the transposition's blocks; it is built once and shared by clones.
    #[test]
    fn the_j_fastest_copy_holds_every_voxel() {
        let [nx, ny, nz] = [45, 37, 3];
        let g = Geometry::axis_aligned([nx, ny, nz], V3::default(), [1.0; 3]).unwrap();
        let data: Vec<i16> = (0..nx * ny * nz)
            .map(|n| (n % 30011) as i16 - 15000)
            .collect();
        let v = Volume::new(g, data, Rescale::default()).unwrap();
        let clone = v.clone();
        assert!(!v.has_j_fastest());
        let t = v.j_fastest();
        assert!(clone.has_j_fastest(), "clones share the copy");
        assert_eq!(t.len(), v.voxels().len());
        for k in 0..nz {
            for i in 0..nx {
                for j in 0..ny {
                    assert_eq!(
                        Some(t[j + ny * (i + nx * k)]),
                        v.get(i, j, k),
                        "({i}, {j}, {k})"
                    );
                }
            }
        }
        assert_eq!(v.byte_budget(), 2 * v.byte_size());
    }

    #[test]
    fn sampling_at_centres_and_between() {
        let v = ramp();
        assert_eq!(
            v.sample_nearest(V3::new(1.0, 2.0, 1.0)),
            Some(1 + 4 * 2 + 12)
        );
        assert_eq!(v.sample_trilinear(V3::new(1.0, 2.0, 1.0)), Some(21.0));
        assert_eq!(v.sample_trilinear(V3::new(1.5, 0.0, 0.0)), Some(1.5));
        assert_eq!(v.sample_trilinear(V3::new(0.0, 0.0, 0.5)), Some(6.0));
        assert_eq!(
            v.sample_trilinear(V3::new(3.4, 0.0, 0.0)),
            Some(3.0),
            "edge half voxel extends"
        );
        assert_eq!(v.sample_nearest(V3::new(-0.6, 0.0, 0.0)), None);
        assert_eq!(v.sample_trilinear(V3::new(0.0, 2.6, 0.0)), None);
    }

    #[test]
    fn refuses_bad_input() {
        assert!(Geometry::axis_aligned([0, 1, 1], V3::default(), [1.0; 3]).is_err());
        assert!(Geometry::axis_aligned([1, 1, 1], V3::default(), [1.0, 0.0, 1.0]).is_err());
        let g = Geometry::axis_aligned([2, 2, 2], V3::default(), [1.0; 3]).unwrap();
        assert_eq!(
            Volume::new(g.clone(), vec![0i16; 7], Rescale::default()).unwrap_err(),
            RenderError::DataSize {
                expected: 8,
                got: 7
            }
        );
        assert!(
            Volume::new(
                g,
                vec![0i16; 8],
                Rescale {
                    slope: 0.0,
                    intercept: 0.0
                }
            )
            .is_err()
        );
    }

    #[test]
    fn tilt_is_measured() {
        let tilt = 18.5f64.to_radians();
        let g = Geometry::new(
            [2, 2, 2],
            V3::default(),
            [
                V3::new(0.5, 0.0, 0.0),
                V3::new(0.0, 0.5, 0.0),
                V3::new(0.0, 2.0 * tilt.sin(), 2.0 * tilt.cos()),
            ],
        )
        .unwrap();
        assert!((g.shear_degrees() - 18.5).abs() < 1e-9);
        assert!((g.slice_spacing() - 2.0 * tilt.cos()).abs() < 1e-12);
    }
}
