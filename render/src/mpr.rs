//! Multiplanar reformatting: a volume seen through a viewport on any plane (axial, coronal,
//! sagittal, oblique), one plane thick or as a slab (MIP, MinIP, average) of a given thickness
//! in mm, with nearest or trilinear sampling. Rows render in parallel (rayon). Views whose
//! canvas axes and normal follow the voxel axes take a separable path: each canvas column,
//! row and slab step maps to a fixed voxel offset, so a pixel is one table-driven load per slab
//! step.

use rayon::prelude::*;

use crate::error::RenderError;
use crate::frame::{Frame, Pixels};
use crate::math::V3;
use crate::viewport::Viewport;
use crate::volume::{Geometry, Volume};
use crate::window::GreyTable;

/// How values between voxel centres are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampling {
    /// The nearest voxel (exact stored values).
    Nearest,
    /// Trilinear interpolation.
    #[default]
    Trilinear,
}

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

/// What to render.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MprRequest<'a> {
    /// The view.
    pub viewport: &'a Viewport,
    /// Sampling.
    pub sampling: Sampling,
    /// A slab, or one plane.
    pub slab: Option<Slab>,
    /// Grey for canvas pixels outside the volume.
    pub background: u8,
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

/// Renders `req` from `volume` through the grey `table`.
pub fn render(
    volume: &Volume,
    table: &GreyTable,
    req: &MprRequest<'_>,
) -> Result<Frame, RenderError> {
    let vp = req.viewport;
    vp.validate()?;
    if let Some(s) = req.slab
        && !(s.thickness.is_finite() && (0.0..=1000.0).contains(&s.thickness))
    {
        return Err(RenderError::View {
            field: "slab",
            reason: format!("thickness {} mm must be 0-1000", s.thickness),
        });
    }
    let (w, h) = (vp.width as usize, vp.height as usize);
    let mut out = vec![req.background; w * h];
    let g = volume.geometry();
    let (o, dx, dy) = vp.basis();
    let normal = vp.plane.normal();
    let offsets = slab_offsets(g, normal, req.slab);
    let view = VoxelView {
        v0: g.patient_to_voxel(o),
        dx: g.patient_dir_to_voxel(dx),
        dy: g.patient_dir_to_voxel(dy),
        dn: g.patient_dir_to_voxel(normal),
        offsets,
    };
    // A negative slope reverses the order of modality values.
    let mode = match (req.slab.map(|s| s.mode), volume.rescale().slope < 0.0) {
        (None, _) => SlabMode::Mip,
        (Some(SlabMode::Mip), true) => SlabMode::MinIp,
        (Some(SlabMode::MinIp), true) => SlabMode::Mip,
        (Some(m), _) => m,
    };
    match (req.sampling, Separable::new(volume, &view, w, h)) {
        (Sampling::Nearest, Some(sep)) => {
            sep.render(volume.voxels(), table, mode, req.background, &mut out, w)
        }
        (Sampling::Nearest, None) => general(
            volume,
            table,
            &view,
            mode,
            req.background,
            &mut out,
            w,
            nearest,
        ),
        (Sampling::Trilinear, _) => general(
            volume,
            table,
            &view,
            mode,
            req.background,
            &mut out,
            w,
            trilinear,
        ),
    }
    Ok(Frame {
        width: vp.width,
        height: vp.height,
        pixels: Pixels::Gray8(out),
    })
}

/// The view in voxel coordinates: pixel (x, y) at slab step s samples
/// `v0 + x*dx + y*dy + offsets[s]*dn`.
struct VoxelView {
    v0: V3,
    dx: V3,
    dy: V3,
    dn: V3,
    offsets: Vec<f64>,
}

#[inline]
fn nearest(v: &Volume, p: V3) -> Option<f32> {
    v.sample_nearest(p).map(f32::from)
}

#[inline]
fn trilinear(v: &Volume, p: V3) -> Option<f32> {
    v.sample_trilinear(p)
}

#[allow(clippy::too_many_arguments)]
fn general(
    volume: &Volume,
    table: &GreyTable,
    view: &VoxelView,
    mode: SlabMode,
    background: u8,
    out: &mut [u8],
    w: usize,
    sample: fn(&Volume, V3) -> Option<f32>,
) {
    out.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        let row_start = view.v0 + view.dy * y as f64;
        for (x, px) in row.iter_mut().enumerate() {
            let p = row_start + view.dx * x as f64;
            let value = if view.offsets.len() == 1 {
                sample(volume, p + view.dn * view.offsets[0])
            } else {
                combine(
                    mode,
                    view.offsets
                        .iter()
                        .map(|t| sample(volume, p + view.dn * *t)),
                )
            };
            *px = value.map_or(background, |s| table.get_f32(s));
        }
    });
}

fn combine(mode: SlabMode, samples: impl Iterator<Item = Option<f32>>) -> Option<f32> {
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

/// A view whose canvas x, canvas y and normal each move along one voxel axis: voxel offsets
/// split into a per-column, a per-row and a per-slab-step part.
struct Separable {
    cols: Vec<Option<usize>>,
    rows: Vec<Option<usize>>,
    steps: Vec<usize>,
}

impl Separable {
    fn new(volume: &Volume, view: &VoxelView, w: usize, h: usize) -> Option<Self> {
        let ax = single_axis(view.dx)?;
        let ay = single_axis(view.dy)?;
        let an = if view.offsets.len() > 1 {
            single_axis(view.dn)?
        } else {
            3 - ax - ay
        };
        if ax == ay || ax == an || ay == an {
            return None;
        }
        let [nx, ny, nz] = volume.geometry().dims();
        let dims = [nx, ny, nz];
        let strides = [1, nx, nx * ny];
        let comp = |v: V3, a: usize| v.to_array()[a];
        let index = |pos: f64, a: usize| {
            let r = (pos + 0.5).floor();
            (r >= 0.0 && r < dims[a] as f64).then(|| r as usize * strides[a])
        };
        // The fixed voxel coordinates of the other axes come from v0 (they do not vary).
        let base = |a: usize| comp(view.v0, a);
        let cols = (0..w)
            .map(|x| index(base(ax) + comp(view.dx, ax) * x as f64, ax))
            .collect();
        let rows = (0..h)
            .map(|y| index(base(ay) + comp(view.dy, ay) * y as f64, ay))
            .collect();
        // Slab steps outside the volume are skipped; with none left the canvas is background.
        let steps: Vec<usize> = view
            .offsets
            .iter()
            .filter_map(|t| index(base(an) + comp(view.dn, an) * t, an))
            .collect();
        if steps.is_empty() {
            return Some(Self {
                cols,
                rows: vec![None; h],
                steps: vec![0],
            });
        }
        Some(Self { cols, rows, steps })
    }

    fn render(
        &self,
        voxels: &[i16],
        table: &GreyTable,
        mode: SlabMode,
        background: u8,
        out: &mut [u8],
        w: usize,
    ) {
        out.par_chunks_mut(w)
            .zip(self.rows.par_iter())
            .for_each(|(row, r)| {
                let Some(r) = *r else {
                    row.fill(background);
                    return;
                };
                if self.steps.len() == 1 {
                    let base = r + self.steps[0];
                    for (px, c) in row.iter_mut().zip(&self.cols) {
                        *px = c.map_or(background, |c| table.get(voxels[base + c]));
                    }
                    return;
                }
                let mut acc: Vec<i32> = vec![
                    if mode == SlabMode::MinIp {
                        i32::MAX
                    } else {
                        i32::MIN
                    };
                    w
                ];
                if mode == SlabMode::Average {
                    acc.fill(0);
                }
                for s in &self.steps {
                    let base = r + s;
                    for (a, c) in acc.iter_mut().zip(&self.cols) {
                        if let Some(c) = c {
                            let v = i32::from(voxels[base + c]);
                            *a = match mode {
                                SlabMode::Mip => (*a).max(v),
                                SlabMode::MinIp => (*a).min(v),
                                SlabMode::Average => *a + v,
                            };
                        }
                    }
                }
                let n = self.steps.len() as f32;
                for ((px, a), c) in row.iter_mut().zip(&acc).zip(&self.cols) {
                    *px = match (c, mode) {
                        (None, _) => background,
                        (Some(_), SlabMode::Average) => table.get_f32(*a as f32 / n),
                        (Some(_), _) => table.get(*a as i16),
                    };
                }
            });
    }
}

/// The one voxel axis `v` moves along, if it moves along exactly one.
fn single_axis(v: V3) -> Option<usize> {
    let a = v.to_array();
    let scale = a.iter().fold(0.0f64, |m, c| m.max(c.abs()));
    if scale == 0.0 {
        return None;
    }
    let moving: Vec<usize> = (0..3).filter(|&i| a[i].abs() > scale * 1e-9).collect();
    (moving.len() == 1).then(|| moving[0])
}
