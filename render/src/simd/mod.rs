//! SIMD kernels, chosen at run time by CPU feature: [`Avx2`] is the proof that the CPU (and
//! the volume) suit them, and its methods are the only way in. `avx2.rs` holds the eight-lane
//! kernels (the per-pixel path's rows, the separable path's lines), `avx512.rs` the
//! sixteen-lane ones (a row's interior and slab values, AVX-512F and BW; greys by byte
//! permutes with VBMI).
//!
//! Invariants: each kernel performs the same f32 operations in the same order as the scalar
//! code (`sampler.rs`, `lines.rs`, `slab.rs`), so a frame is bit-identical with and without
//! them (the tests beside each kernel and `tests/properties.rs` compare); and every gather
//! index is clamped into its slice just before the gather, whatever the floats held, so a
//! read cannot leave the slice. This module is one of render's places with unsafe code (see
//! `tests/tests/tidy.rs`); every unsafe block says why it is sound.
#![allow(unsafe_code)]
// A kernel takes the grid, the row's start and step, the table, the background and the columns.
#![allow(clippy::too_many_arguments)]

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(target_arch = "x86_64")]
use avx2::{
    lerp_combine, lerp_line, nearest_interior, nearest_line, nearest_row, trilinear_ends,
    trilinear_interior,
};
#[cfg(target_arch = "x86_64")]
use avx512::{trilinear_interior16, trilinear_interior16_vbmi, trilinear_values16};

use crate::lines::{ColumnOffsets, LineTaps};
use crate::sampler::Grid;
use crate::slab::Combine;
use crate::window::GreyTable;

/// Proof that this CPU has AVX2 (and that the volume suits the kernels): only [`Avx2::new`]
/// makes one.
#[derive(Clone, Copy)]
pub(crate) struct Avx2 {
    /// The CPU has AVX-512F and BW too.
    wide: bool,
    /// The CPU has AVX-512 VBMI too.
    vbmi: bool,
}

impl Avx2 {
    /// `Some` when the CPU has AVX2 and the grid has at least two voxels along each axis, an
    /// even voxel count and fewer than 2^30 voxels (indices fit an i32 lane).
    pub(crate) fn new(grid: &Grid<'_>) -> Option<Self> {
        let len = grid.voxels.len();
        let shaped = grid.n.iter().all(|&n| n >= 2) && len.is_multiple_of(2) && len < 1 << 30;
        (shaped && detected()).then_some(Self {
            wide: wide(),
            vbmi: vbmi(),
        })
    }

    /// Canvas row pixels `x0..x0 + row.len()` by trilinear sampling: pixel x samples
    /// `s0 + dx * x`. `next`, where the next row starts, is a hint: where that row moves to
    /// another pair of slices, the sixteen-lane kernel reads the new slice's voxels ahead.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn trilinear_row(
        self,
        grid: &Grid<'_>,
        s0: [f32; 3],
        dx: [f32; 3],
        next: [f32; 3],
        table: &GreyTable,
        background: u8,
        x0: usize,
        row: &mut [u8],
    ) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` exists only where `detected()` found AVX2, `wide` only where
        // AVX-512F and BW were found too, and `vbmi` only where VBMI was found as well.
        unsafe {
            // The sixteen-lane kernels take the whole interior, a last partial chunk included.
            let (a, b) = if self.wide {
                interior_columns(grid, s0, dx, x0, row.len())
            } else {
                interior_chunks(grid, s0, dx, x0, row.len())
            };
            let (head, rest) = row.split_at_mut(a - x0);
            let (middle, tail) = rest.split_at_mut(b - a);
            match (self.wide, self.vbmi) {
                (true, true) => trilinear_interior16_vbmi(grid, s0, dx, next, table, a, middle),
                (true, false) => trilinear_interior16(grid, s0, dx, next, table, a, middle),
                _ => trilinear_interior(grid, s0, dx, table, a, middle),
            }
            trilinear_ends(grid, s0, dx, table, background, (x0, head), (b, tail));
        }
    }

    /// The trilinear values (before the grey table) of slab step `step` at columns
    /// `x0..x0 + out.len()` (pixel x samples `(s0 + dx * x) + step`), each inside the grid's
    /// interior, sixteen at a time; `false` (and `out` untouched) where the CPU lacks
    /// AVX-512F and BW.
    pub(crate) fn trilinear_values(
        self,
        grid: &Grid<'_>,
        s0: [f32; 3],
        dx: [f32; 3],
        step: [f32; 3],
        x0: usize,
        out: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self.wide {
            // SAFETY: `wide` exists only where AVX-512F and BW were found, and `self` only for
            // grids that pass `Avx2::new`.
            unsafe { trilinear_values16(grid, s0, dx, step, x0, out) };
            return true;
        }
        let _ = (grid, s0, dx, step, x0, out);
        false
    }

    /// [`crate::lines::interpolate`] compiled for AVX2: the loop is vectorised eight lanes
    /// wide instead of the four of baseline x86-64, with the same operations in the same
    /// order, so the line does not change.
    pub(crate) fn interpolate(
        self,
        line: &mut [f32],
        a: &[i16],
        b: &[i16],
        c: &[i16],
        d: &[i16],
        fy: f32,
        fz: f32,
    ) {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn run(line: &mut [f32], a: &[i16], b: &[i16], c: &[i16], d: &[i16], fy: f32, fz: f32) {
            crate::lines::interpolate(line, a, b, c, d, fy, fz);
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` exists only where `detected()` found AVX2.
        unsafe {
            run(line, a, b, c, d, fy, fz)
        }
        #[cfg(not(target_arch = "x86_64"))]
        crate::lines::interpolate(line, a, b, c, d, fy, fz);
    }

    /// [`crate::lines::lerp_lines`] compiled for AVX2 (the same operations, eight lanes
    /// wide).
    pub(crate) fn lerp_lines(self, line: &mut [f32], a: &[f32], b: &[f32], f: f32) {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn run(line: &mut [f32], a: &[f32], b: &[f32], f: f32) {
            crate::lines::lerp_lines(line, a, b, f);
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` exists only where `detected()` found AVX2.
        unsafe {
            run(line, a, b, f)
        }
        #[cfg(not(target_arch = "x86_64"))]
        crate::lines::lerp_lines(line, a, b, f);
    }

    /// A CPU with AVX2, for kernels that need nothing of a grid.
    pub(crate) fn detect() -> Option<Self> {
        detected().then_some(Self {
            wide: wide(),
            vbmi: vbmi(),
        })
    }

    /// The separable path's last step for one canvas row: pixel x interpolates `line` between
    /// the taps' positions with their weight (`p + (q - p) * f`, as the scalar path does) and
    /// takes the table's grey.
    ///
    /// # Panics
    /// If a tap's position lies outside `line` or `out` is not as long as the taps.
    pub(crate) fn lerp_line(
        self,
        line: &[f32],
        taps: &LineTaps,
        table: &GreyTable,
        out: &mut [u8],
    ) {
        assert_eq!(out.len(), taps.len(), "one pixel per tap");
        assert!(taps.end() <= line.len(), "line positions outside the line");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` exists only where `detected()` found AVX2; every position is below
        // `taps.end` (see `LineTaps::new`), which was checked against the line's length.
        unsafe {
            lerp_line(line, taps, table, out)
        }
    }

    /// The separable nearest path for one canvas row: pixel x is the grey of
    /// `voxels[base + offsets[x]]`, as the scalar path's `table.get`.
    ///
    /// # Panics
    /// If `out` is not as long as `offsets`, a voxel lies outside `voxels`, or `voxels` has an
    /// odd length (the kernel reads aligned pairs).
    pub(crate) fn nearest_line(
        self,
        voxels: &[i16],
        base: usize,
        offsets: &ColumnOffsets,
        table: &GreyTable,
        out: &mut [u8],
    ) {
        assert_eq!(out.len(), offsets.len(), "one pixel per column");
        assert!(
            voxels.len().is_multiple_of(2) && voxels.len() < 1 << 31,
            "an even voxel count that fits an i32 index"
        );
        assert!(
            base + offsets.end() <= voxels.len(),
            "columns outside the voxels"
        );
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` exists only where `detected()` found AVX2.
        unsafe {
            nearest_line(voxels, base, offsets, table, out)
        }
    }

    /// Canvas row pixels `x0..x0 + row.len()` by nearest sampling: pixel x samples
    /// `s0 + dx * x`.
    pub(crate) fn nearest_row(
        self,
        grid: &Grid<'_>,
        s0: [f32; 3],
        dx: [f32; 3],
        table: &GreyTable,
        background: u8,
        x0: usize,
        row: &mut [u8],
    ) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` exists only where `detected()` found AVX2, `wide` only where
        // AVX-512F and BW were found too, and `vbmi` only where VBMI was found as well.
        unsafe {
            let (a, b) = interior_chunks(grid, s0, dx, x0, row.len());
            let (head, rest) = row.split_at_mut(a - x0);
            let (middle, tail) = rest.split_at_mut(b - a);
            nearest_row(grid, s0, dx, table, background, x0, head);
            nearest_interior(grid, s0, dx, table, a, middle);
            nearest_row(grid, s0, dx, table, background, b, tail);
        }
    }
}

/// Which of the kernels' instruction sets this CPU has: AVX2, AVX-512F with BW, AVX-512 VBMI.
fn features() -> [bool; 3] {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f") && has!("avx512bw");
        [has!("avx2"), avx512, avx512 && has!("avx512vbmi")]
    }
    #[cfg(not(target_arch = "x86_64"))]
    [false; 3]
}

fn detected() -> bool {
    features()[0]
}

fn wide() -> bool {
    features()[1]
}

fn vbmi() -> bool {
    features()[2]
}

/// The columns `[a, b)` within `[x0, x0 + len)` that the interior kernels take: whole
/// chunks of eight inside the grid's interior for this row.
fn interior_chunks(
    grid: &Grid<'_>,
    s0: [f32; 3],
    dx: [f32; 3],
    x0: usize,
    len: usize,
) -> (usize, usize) {
    let (a, b) = interior_columns(grid, s0, dx, x0, len);
    (a, a + (b - a) / 8 * 8)
}

/// The columns `[a, b)` within `[x0, x0 + len)` inside the grid's interior for this row.
fn interior_columns(
    grid: &Grid<'_>,
    s0: [f32; 3],
    dx: [f32; 3],
    x0: usize,
    len: usize,
) -> (usize, usize) {
    let end = x0 + len;
    let (a, b) = grid.interior(s0, dx, end);
    let a = a.clamp(x0, end);
    (a, b.clamp(a, end))
}

impl Avx2 {
    /// The separable path's slab step for one canvas row: pixel x interpolates `line`
    /// between the taps' positions (as [`Avx2::lerp_line`]) and combines the value into
    /// `acc[x]` (`f32::max`, `f32::min` or `+`, as the scalar path does; values are never NaN).
    ///
    /// # Panics
    /// If a tap's position lies outside `line` or `acc` is not as long as the taps.
    pub(crate) fn lerp_combine(self, line: &[f32], taps: &LineTaps, how: Combine, acc: &mut [f32]) {
        assert_eq!(acc.len(), taps.len(), "one value per tap");
        assert!(taps.end() <= line.len(), "line positions outside the line");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` exists only where `detected()` found AVX2; every position is below
        // `taps.end`, which was checked against the line's length.
        unsafe {
            lerp_combine(line, taps, how, acc)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::volume;

    #[test]
    fn odd_or_flat_grids_take_the_scalar_path() {
        let odd = volume(1, [3, 3, 3]);
        assert!(Avx2::new(&Grid::new(&odd)).is_none());
        let flat = volume(1, [4, 4, 1]);
        assert!(Avx2::new(&Grid::new(&flat)).is_none());
    }
}
