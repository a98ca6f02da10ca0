//! Multiplanar reformatting, the entry point: a volume seen through a viewport on any plane
//! (axial, coronal, sagittal, oblique), one plane thick or as a slab (MIP, MinIP, average) of
//! a given thickness in mm, with nearest or trilinear sampling. It checks the request, puts
//! the view in voxel coordinates and picks the path: the separable paths (`separable.rs`) for
//! views whose canvas axes and normal follow the voxel axes, the general per-pixel path
//! (`grid.rs`) for every other. Invariant: every path gives the frame the scalar samplers
//! would (the tests compare).

use crate::error::RenderError;
use crate::frame::{Frame, Pixels};
use crate::grid::general;
use crate::sampler::{Grid, NearestSampler, TrilinearSampler};
use crate::separable::{Separable, SeparableLinear};
use crate::slab::VoxelView;
pub use crate::slab::{Slab, SlabMode, slab_offsets};
use crate::viewport::Viewport;
use crate::volume::Volume;
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
