//! Multiplanar reformatting: a volume seen through a viewport on any plane (axial, coronal,
//! sagittal, oblique), one plane thick or as a slab (MIP, MinIP, average) of a given thickness
//! in mm, with nearest or trilinear sampling. Rows render in parallel (rayon). Views whose
//! canvas axes and normal follow the voxel axes take the separable paths (`separable.rs`);
//! every other view the per-pixel path (`grid.rs` samplers, `general` here).

use rayon::prelude::*;

use crate::error::RenderError;
use crate::frame::{Frame, Pixels};
use crate::grid::{Grid, NearestSampler, Sampler, TrilinearSampler};
use crate::math::V3;
use crate::separable::{Separable, SeparableLinear};
use crate::simd::Avx2;
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
    match req.sampling {
        Sampling::Nearest => match Separable::new(volume, &view, w, h) {
            Some(sep) => sep.render(volume, table, mode, req.background, &mut out, w),
            None => general(
                NearestSampler(Grid::new(volume)),
                table,
                &view,
                mode,
                req.background,
                &mut out,
                w,
            ),
        },
        Sampling::Trilinear => match SeparableLinear::new(volume, &view, w, h) {
            Some(lin) => lin.render(volume, table, mode, req.background, &mut out, w),
            None => general(
                TrilinearSampler(Grid::new(volume)),
                table,
                &view,
                mode,
                req.background,
                &mut out,
                w,
            ),
        },
    }
    Ok(Frame {
        width: vp.width,
        height: vp.height,
        pixels: Pixels::Gray8(out),
    })
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

#[allow(clippy::too_many_arguments)]
fn general<S: Sampler>(
    sampler: S,
    table: &GreyTable,
    view: &VoxelView,
    mode: SlabMode,
    background: u8,
    out: &mut [u8],
    w: usize,
) {
    let f = |v: V3| [v.x as f32, v.y as f32, v.z as f32];
    let dx = f(view.dx);
    let steps: Vec<[f32; 3]> = view.offsets.iter().map(|t| f(view.dn * *t)).collect();
    let simd = Avx2::new(sampler.grid());
    out.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        let start = f(view.v0 + view.dy * y as f64);
        if steps.len() == 1 {
            let s0 = [
                start[0] + steps[0][0],
                start[1] + steps[0][1],
                start[2] + steps[0][2],
            ];
            // Columns outside the span keep the background the frame was filled with.
            let (a, b) = sampler.grid().span(s0, dx, w);
            if let Some(simd) = simd {
                sampler.simd_row(simd, s0, dx, table, background, a, &mut row[a..b]);
                return;
            }
            for (x, px) in row.iter_mut().enumerate().take(b).skip(a) {
                let xf = x as f32;
                let p = [s0[0] + dx[0] * xf, s0[1] + dx[1] * xf, s0[2] + dx[2] * xf];
                *px = sampler.sample(p).map_or(background, |v| table.get_f32(v));
            }
            return;
        }
        for (x, px) in row.iter_mut().enumerate() {
            let xf = x as f32;
            let p = [
                start[0] + dx[0] * xf,
                start[1] + dx[1] * xf,
                start[2] + dx[2] * xf,
            ];
            let samples = steps
                .iter()
                .map(|s| sampler.sample([p[0] + s[0], p[1] + s[1], p[2] + s[2]]));
            *px = combine(mode, samples).map_or(background, |v| table.get_f32(v));
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
