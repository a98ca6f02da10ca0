//! Slabs: how the samples across a slab combine (`SlabMode`, and `Combine` for the kernels'
//! step by step form), where the slab's planes lie (`slab_offsets`), and the view in voxel
//! coordinates with those offsets (`VoxelView`) that every MPR path renders from. Invariant:
//! `combine` is the definition every path's slab values must equal.

use crate::math::V3;
use crate::volume::Geometry;

/// How the samples across a slab combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlabMode {
    /// Maximum intensity projection.
    Mip,
    /// Minimum intensity projection.
    MinIp,
    /// Mean.
    Average,
}

/// A slab: thickness (mm) centred on the plane, and how to combine it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slab {
    /// Thickness in mm.
    pub thickness: f64,
    /// Combination.
    pub mode: SlabMode,
}

/// Offsets (mm along the plane normal) of the planes sampled for a slab: spaced by the finest
/// voxel step along the normal, centred on the plane, covering the thickness.
pub fn slab_offsets(geometry: &Geometry, normal: V3, slab: Option<Slab>) -> Vec<f64> {
    let Some(slab) = slab.filter(|s| s.thickness > 0.0) else {
        return vec![0.0];
    };
    let step = geometry.step_along(normal);
    let n = ((slab.thickness / step).round() as usize).max(1);
    let first = -(n as f64 - 1.0) * step / 2.0;
    (0..n).map(|m| first + m as f64 * step).collect()
}

/// The view in voxel coordinates: pixel (x, y) at slab step s samples
/// `v0 + x*dx + y*dy + offsets[s]*dn`.
pub(crate) struct VoxelView {
    pub(crate) v0: V3,
    pub(crate) dx: V3,
    pub(crate) dy: V3,
    pub(crate) dn: V3,
    pub(crate) offsets: Vec<f64>,
}

/// How a slab step's interpolated line joins the slab's accumulator.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Combine {
    /// The first step: the accumulator takes the line.
    First,
    Max,
    Min,
    Add,
}

/// The slab value of a column from its samples (`None`: outside the volume), skipping
/// the missing ones: the reference every path must equal.
pub(crate) fn combine(mode: SlabMode, samples: impl Iterator<Item = Option<f32>>) -> Option<f32> {
    let mut acc: Option<f32> = None;
    let mut n = 0u32;
    for s in samples.flatten() {
        n += 1;
        acc = Some(match (acc, mode) {
            (None, _) => s,
            (Some(a), SlabMode::Mip) => a.max(s),
            (Some(a), SlabMode::MinIp) => a.min(s),
            (Some(a), SlabMode::Average) => a + s,
        });
    }
    match mode {
        SlabMode::Average => acc.map(|sum| sum / n as f32),
        _ => acc,
    }
}
