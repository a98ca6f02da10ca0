//! SIMD kernels, chosen at run time by CPU feature. For the per-pixel MPR path (oblique
//! planes, one plane thick): AVX2 eight canvas pixels at a time, and AVX-512 sixteen at a
//! time over a row's interior (where no clamp applies), the voxel reads done by hardware
//! gathers and, with VBMI, a short grey table looked up by byte permutes. For the separable
//! path: the last step of a row (line taps, lerp, grey) and AVX2 builds of its plain loops.
//! Each kernel performs the same f32 operations in the same order as the scalar code
//! (`grid.rs`, `separable.rs`), so a frame is bit-identical with and without them (the tests
//! below and `tests/properties.rs` compare).
//!
//! One of render's three places with unsafe code (with `pages.rs` and the libjpeg-turbo grey
//! entry in `encode.rs`): the gathers read through a raw pointer. Every gather index is
//! clamped into its slice just before the gather, whatever the floats held, so a read cannot
//! leave the slice.
#![allow(unsafe_code)]
// A kernel takes the grid, the row's start and step, the table, the background and the columns.
#![allow(clippy::too_many_arguments)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::grid::Grid;
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
            // SAFETY: `wide` exists only where AVX-512F and BW were found, and `self` only for grids
            // that pass `Avx2::new`.
            unsafe { trilinear_values16(grid, s0, dx, step, x0, out) };
            return true;
        }
        let _ = (grid, s0, dx, step, x0, out);
        false
    }

    /// [`crate::separable::interpolate`] compiled for AVX2: the loop is vectorised eight lanes
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
            crate::separable::interpolate(line, a, b, c, d, fy, fz);
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` exists only where `detected()` found AVX2.
        unsafe {
            run(line, a, b, c, d, fy, fz)
        }
        #[cfg(not(target_arch = "x86_64"))]
        crate::separable::interpolate(line, a, b, c, d, fy, fz);
    }

    /// [`crate::separable::lerp_lines`] compiled for AVX2 (the same operations, eight lanes
    /// wide).
    pub(crate) fn lerp_lines(self, line: &mut [f32], a: &[f32], b: &[f32], f: f32) {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn run(line: &mut [f32], a: &[f32], b: &[f32], f: f32) {
            crate::separable::lerp_lines(line, a, b, f);
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` exists only where `detected()` found AVX2.
        unsafe {
            run(line, a, b, f)
        }
        #[cfg(not(target_arch = "x86_64"))]
        crate::separable::lerp_lines(line, a, b, f);
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
        assert_eq!(out.len(), taps.fx.len(), "one pixel per tap");
        assert!(taps.end <= line.len(), "line positions outside the line");
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
        assert_eq!(out.len(), offsets.at.len(), "one pixel per column");
        assert!(
            voxels.len().is_multiple_of(2) && voxels.len() < 1 << 31,
            "an even voxel count that fits an i32 index"
        );
        assert!(
            base + offsets.end <= voxels.len(),
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

/// The eight lanes' sample positions along one axis, `s + d * x`, as the scalar path
/// computes them (a multiply, then an add).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn positions(s: f32, d: f32, xf: __m256) -> __m256 {
    _mm256_add_ps(_mm256_set1_ps(s), _mm256_mul_ps(_mm256_set1_ps(d), xf))
}

/// The sample positions of the eight pixels from canvas column `x` (pixel x at
/// `s0 + dx * x`), and which of them lie inside the sampling domain.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes(grid: &Grid<'_>, s0: [f32; 3], dx: [f32; 3], x: usize) -> ([__m256; 3], __m256) {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    lanes_at(
        grid,
        s0,
        dx,
        _mm256_add_epi32(_mm256_set1_epi32(x as i32), lane),
    )
}

/// [`lanes`] for the eight canvas columns `xs`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes_at(grid: &Grid<'_>, s0: [f32; 3], dx: [f32; 3], xs: __m256i) -> ([__m256; 3], __m256) {
    let xf = _mm256_cvtepi32_ps(xs);
    let p = [0, 1, 2].map(|a| positions(s0[a], dx[a], xf));
    let mask = _mm256_and_ps(
        inside(p[0], grid.last[0]),
        _mm256_and_ps(inside(p[1], grid.last[1]), inside(p[2], grid.last[2])),
    );
    (p, mask)
}

/// Lanes inside the sampling domain: within half a voxel of the outer voxel centres.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn inside(p: __m256, last: f32) -> __m256 {
    _mm256_and_ps(
        _mm256_cmp_ps::<_CMP_GE_OQ>(p, _mm256_set1_ps(-0.5)),
        _mm256_cmp_ps::<_CMP_LT_OQ>(p, _mm256_set1_ps(last + 0.5)),
    )
}

/// Clamps each lane into `[0, hi]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn clamp_index(v: __m256i, hi: i32) -> __m256i {
    _mm256_min_epi32(
        _mm256_max_epi32(v, _mm256_setzero_si256()),
        _mm256_set1_epi32(hi),
    )
}

/// Writes the eight (or fewer, at the row's end) pixels: the table's grey for lanes inside
/// the volume, the background for the others. `order` holds value orders (stored value +
/// 32768, any i32).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn store(order: __m256i, mask: __m256, table: &GreyTable, background: u8, out: &mut [u8]) {
    let (run, lo, hi) = table.run();
    debug_assert!(run.len() as i32 >= hi - lo + 4);
    let at = _mm256_sub_epi32(
        _mm256_min_epi32(
            _mm256_max_epi32(order, _mm256_set1_epi32(lo)),
            _mm256_set1_epi32(hi),
        ),
        _mm256_set1_epi32(lo),
    );
    if out.len() == 8 {
        // SAFETY: 0 <= at <= hi - lo and the run has hi - lo + 4 bytes, so the four bytes
        // at each position lie inside it.
        let grey = unsafe { _mm256_i32gather_epi32::<1>(run.as_ptr().cast::<i32>(), at) };
        let grey = _mm256_and_si256(grey, _mm256_set1_epi32(0xff));
        let grey = _mm256_blendv_epi8(
            _mm256_set1_epi32(i32::from(background)),
            grey,
            _mm256_castps_si256(mask),
        );
        // 32-bit lanes to bytes: each 128-bit half packs its four lanes into its first four
        // bytes; the two halves' first dwords are then brought together.
        let words = _mm256_packus_epi32(grey, grey);
        let bytes = _mm256_packus_epi16(words, words);
        let joined = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
        let eight = _mm_cvtsi128_si64(_mm256_castsi256_si128(joined));
        out.copy_from_slice(&eight.to_le_bytes());
        return;
    }
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` is 32 writable bytes; the store needs no alignment.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), at) };
    let bits = _mm256_movemask_ps(mask);
    for (l, (px, &i)) in out.iter_mut().zip(&lanes).enumerate() {
        *px = if bits & (1 << l) != 0 {
            run[i as usize]
        } else {
            background
        };
    }
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

/// Trilinear sampling of whole chunks of eight columns from `x0` whose positions all lie in
/// the grid's interior (see `Grid::interior`): the clamps and edge cases of
/// [`trilinear_row`] change nothing there and are left out; the values are the same.
///
/// # Safety
/// The CPU must have AVX2, `grid` must pass [`Avx2::new`], and `row.len()` must be a
/// multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn trilinear_interior(
    grid: &Grid<'_>,
    s0: [f32; 3],
    dx: [f32; 3],
    table: &GreyTable,
    x0: usize,
    row: &mut [u8],
) {
    let (sx, sxy) = (grid.sx as i32, grid.sxy as i32);
    // The largest base whose four pairs (+0, +sx, +sxy, +sx+sxy, each two voxels) stay in
    // the slice; `Avx2::new` ensures two voxels along each axis, so it is positive.
    let max_base = grid.voxels.len() as i32 - 2 - sx - sxy;
    let ptr = grid.voxels.as_ptr().cast::<i32>();
    let all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let (vsx, vsxy) = (_mm256_set1_epi32(sx), _mm256_set1_epi32(sxy));
    let vsxsxy = _mm256_set1_epi32(sx + sxy);
    for (chunk, out) in row.chunks_exact_mut(8).enumerate() {
        let x = x0 + chunk * 8;
        let xf = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32(x as i32), lane));
        let p = [0, 1, 2].map(|a| positions(s0[a], dx[a], xf));
        let i0 = _mm256_cvttps_epi32(p[0]);
        let j0 = _mm256_cvttps_epi32(p[1]);
        let k0 = _mm256_cvttps_epi32(p[2]);
        let fx = _mm256_sub_ps(p[0], _mm256_cvtepi32_ps(i0));
        let fy = _mm256_sub_ps(p[1], _mm256_cvtepi32_ps(j0));
        let fz = _mm256_sub_ps(p[2], _mm256_cvtepi32_ps(k0));
        let base = clamp_index(
            _mm256_add_epi32(
                i0,
                _mm256_add_epi32(_mm256_mullo_epi32(j0, vsx), _mm256_mullo_epi32(k0, vsxy)),
            ),
            max_base,
        );
        // SAFETY: 0 <= base <= max_base, so each pair read lies in the slice.
        let (g00, g10, g01, g11) = unsafe {
            (
                _mm256_i32gather_epi32::<2>(ptr, base),
                _mm256_i32gather_epi32::<2>(ptr, _mm256_add_epi32(base, vsx)),
                _mm256_i32gather_epi32::<2>(ptr, _mm256_add_epi32(base, vsxy)),
                _mm256_i32gather_epi32::<2>(ptr, _mm256_add_epi32(base, vsxsxy)),
            )
        };
        let v = trilinear_value([g00, g10, g01, g11], [fx, fy, fz]);
        out_row(v, all, table, 0, out);
    }
}

/// One row's constants for the sixteen-lane trilinear kernels: the voxels, their strides and
/// the row's start and step.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Row16<'a> {
    voxels: &'a [i16],
    max_base: i32,
    sx: i32,
    sxy: i32,
    s0: [f32; 3],
    dx: [f32; 3],
    /// A slab step added after `s0 + dx * x`, as the scalar slab path adds it.
    step: Option<[f32; 3]>,
    /// Per axis, for an axis whose position does not change along the columns asked for (see
    /// [`Row16::fixed_axis`]): its voxel index times its stride, and its weight.
    fixed: [(i32, f32); 3],
}

#[cfg(target_arch = "x86_64")]
impl<'a> Row16<'a> {
    fn new(grid: &Grid<'a>, s0: [f32; 3], dx: [f32; 3], step: Option<[f32; 3]>) -> Self {
        let (sx, sxy) = (grid.sx as i32, grid.sxy as i32);
        Self {
            voxels: grid.voxels,
            max_base: grid.voxels.len() as i32 - 2 - sx - sxy,
            sx,
            sxy,
            s0,
            dx,
            step,
            fixed: [(0, 0.0); 3],
        }
    }

    /// Pixel x's position along axis `a`, as the scalar paths compute it.
    fn position(&self, a: usize, x: usize) -> f32 {
        let p = self.s0[a] + self.dx[a] * x as f32;
        self.step.map_or(p, |s| p + s[a])
    }

    /// An axis (k first, then j, then i) along which every column of `columns` (non-empty,
    /// each inside the grid's interior) has the same position, its index and weight kept for
    /// [`Row16::values`]; 3 when there is none. A row parallel to the slices, as in most
    /// oblique views, has k fixed. The rounded sum `s + d * x` (then `+ step`) never falls
    /// as x grows when d >= 0, nor rises when d < 0, so equal ends mean an equal middle.
    fn fixed_axis(&mut self, columns: std::ops::Range<usize>) -> usize {
        let (first, last) = (columns.start, columns.end - 1);
        let strides = [1, self.sx, self.sxy];
        for a in [2, 1, 0] {
            let p = self.position(a, first);
            if p.to_bits() == self.position(a, last).to_bits() {
                // Inside the interior 0 <= p < n - 1, so the truncation is the kernel's.
                let i = p as i32;
                self.fixed[a] = (i * strides[a], p - i as f32);
                return a;
            }
        }
        3
    }

    /// For a row with k fixed ([`Row16::fixed_axis`] answered 2) whose next row (starting at
    /// `next`) reads another pair of slices: what to read ahead while this row renders.
    fn ahead(&self, next: [f32; 3]) -> Option<Ahead> {
        let k0 = self.fixed[2].0 / self.sxy;
        let slices = i32::try_from(self.voxels.len()).ok()? / self.sxy;
        let kn = next[2] as i32;
        let mut offsets = [None; 2];
        for (o, k) in offsets.iter_mut().zip([kn, kn + 1]) {
            if k != k0 && k != k0 + 1 && (0..slices).contains(&k) {
                *o = Some(((k - k0) * self.sxy) as isize);
            }
        }
        if offsets == [None; 2] {
            return None;
        }
        // Lanes close enough that each voxel row the sixteen pixels cross is read: at most
        // two rows apart (j and j + 1 are both read) and a cache line apart along i.
        let along = |d: f32, span: f32| if d == 0.0 { 16.0 } else { span / d.abs() };
        let step = along(self.dx[0], 32.0).min(along(self.dx[1], 2.0));
        Some(Ahead {
            offsets,
            step: (step as usize).clamp(1, 8),
        })
    }

    /// The trilinear values of the sixteen pixels from column x (pixel x samples
    /// `s0 + dx * x`, plus the step if any), with [`trilinear_interior`]'s operations in its order: the scalar
    /// sampler's values where the positions lie in the grid's interior. Elsewhere the lanes
    /// hold values that mean nothing, but every read stays in the slice.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and BW, and the grid must pass [`Avx2::new`].
    /// `F` names an axis prepared by [`Row16::fixed_axis`] (its index and weight are taken
    /// from there, the same numbers), or is 3.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    unsafe fn values<const F: usize>(&self, x: usize) -> __m512 {
        // SAFETY: as this function's.
        unsafe { self.values_base::<F>(x).0 }
    }

    /// [`Row16::values`], and the lanes' clamped voxel index (of the pair at j, k).
    ///
    /// # Safety
    /// As for [`Row16::values`].
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    unsafe fn values_base<const F: usize>(&self, x: usize) -> (__m512, __m512i) {
        // A pair's voxel at x and its step to x + 1, each by one multiply-add of the two
        // halves: the difference of two i16 values is exact in an i32 and in an f32, so
        // `a + (b - a) * f` gives what the scalar lerp gives.
        let (first, step) = (_mm512_set1_epi32(1), _mm512_set1_epi32(0x0001_ffff));
        let lerp_pair = |g: __m512i, f: __m512| {
            let a = _mm512_cvtepi32_ps(_mm512_madd_epi16(g, first));
            let d = _mm512_cvtepi32_ps(_mm512_madd_epi16(g, step));
            _mm512_add_ps(a, _mm512_mul_ps(d, f))
        };
        let lerp = |a: __m512, b: __m512, f: __m512| {
            _mm512_add_ps(a, _mm512_mul_ps(_mm512_sub_ps(b, a), f))
        };
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let (vsx, vsxy) = (_mm512_set1_epi32(self.sx), _mm512_set1_epi32(self.sxy));
        let vsxsxy = _mm512_set1_epi32(self.sx + self.sxy);
        let pos = |s: f32, d: f32, xf: __m512| {
            _mm512_add_ps(_mm512_set1_ps(s), _mm512_mul_ps(_mm512_set1_ps(d), xf))
        };
        let xf = _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_set1_epi32(x as i32), lane));
        // Per axis: the voxel index (times the axis' stride) and the weight of each lane.
        let axis = |a: usize, stride: Option<__m512i>| {
            if a == F {
                let (at, f) = self.fixed[a];
                return (_mm512_set1_epi32(at), _mm512_set1_ps(f));
            }
            let mut p = pos(self.s0[a], self.dx[a], xf);
            if let Some(step) = self.step {
                p = _mm512_add_ps(p, _mm512_set1_ps(step[a]));
            }
            let i = _mm512_cvttps_epi32(p);
            let f = _mm512_sub_ps(p, _mm512_cvtepi32_ps(i));
            (stride.map_or(i, |s| _mm512_mullo_epi32(i, s)), f)
        };
        let (i0, fx) = axis(0, None);
        let (j0, fy) = axis(1, Some(vsx));
        let (k0, fz) = axis(2, Some(vsxy));
        let base = _mm512_add_epi32(i0, _mm512_add_epi32(j0, k0));
        let base = _mm512_min_epi32(
            _mm512_max_epi32(base, _mm512_setzero_si512()),
            _mm512_set1_epi32(self.max_base),
        );
        let ptr = self.voxels.as_ptr().cast::<i32>();
        // SAFETY: 0 <= base <= max_base, so each pair read lies in the slice.
        let (g00, g10, g01, g11) = unsafe {
            (
                _mm512_i32gather_epi32::<2>(base, ptr),
                _mm512_i32gather_epi32::<2>(_mm512_add_epi32(base, vsx), ptr),
                _mm512_i32gather_epi32::<2>(_mm512_add_epi32(base, vsxy), ptr),
                _mm512_i32gather_epi32::<2>(_mm512_add_epi32(base, vsxsxy), ptr),
            )
        };
        let c00 = lerp_pair(g00, fx);
        let c10 = lerp_pair(g10, fx);
        let c01 = lerp_pair(g01, fx);
        let c11 = lerp_pair(g11, fx);
        let c0 = lerp(c00, c10, fy);
        let c1 = lerp(c01, c11, fy);
        (lerp(c0, c1, fz), base)
    }
}

/// The trilinear values (before the grey table) of slab step `step` at columns
/// `x0..x0 + out.len()` (pixel x samples `(s0 + dx * x) + step`, as the scalar slab path),
/// sixteen at a time: the scalar sampler's values, for positions in the grid's interior.
///
/// # Safety
/// The CPU must have AVX-512F and BW, and `grid` must pass [`Avx2::new`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn trilinear_values16(
    grid: &Grid<'_>,
    s0: [f32; 3],
    dx: [f32; 3],
    step: [f32; 3],
    x0: usize,
    out: &mut [f32],
) {
    if out.is_empty() {
        return;
    }
    let mut r = Row16::new(grid, s0, dx, Some(step));
    match r.fixed_axis(x0..x0 + out.len()) {
        // SAFETY (each): the CPU has AVX-512F and BW, and the axis was prepared.
        0 => unsafe { values16::<0>(&r, x0, out) },
        1 => unsafe { values16::<1>(&r, x0, out) },
        2 => unsafe { values16::<2>(&r, x0, out) },
        _ => unsafe { values16::<3>(&r, x0, out) },
    }
}

/// [`trilinear_values16`] for a row prepared by [`Row16::fixed_axis`] (`F`: its answer).
///
/// # Safety
/// As for [`Row16::values`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn values16<const F: usize>(r: &Row16<'_>, x0: usize, out: &mut [f32]) {
    let mut x = 0;
    while x < out.len() {
        // SAFETY: the CPU has AVX-512F and BW; the caller prepared axis F.
        let v = unsafe { r.values::<F>(x0 + x) };
        let rest = &mut out[x..];
        if rest.len() >= 16 {
            // SAFETY: `rest` has at least 16 writable f32s; the store needs no alignment.
            unsafe { _mm512_storeu_ps(rest.as_mut_ptr(), v) };
        } else {
            let mut last = [0f32; 16];
            // SAFETY: `last` is 16 writable f32s.
            unsafe { _mm512_storeu_ps(last.as_mut_ptr(), v) };
            let n = rest.len();
            rest.copy_from_slice(&last[..n]);
        }
        x += 16;
    }
}

/// Voxels a row reads ahead for the next row: the same positions in each new slice (its
/// offset from this row's slice, in voxels), at every `step`-th lane of each sixteen.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Ahead {
    offsets: [Option<isize>; 2],
    step: usize,
}

#[cfg(target_arch = "x86_64")]
impl Ahead {
    /// Asks the CPU to bring the voxel pairs at j and j + 1 of each new slice into L1, for
    /// the chosen lanes of `base` (this row's indices).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn read(&self, voxels: &[i16], sx: isize, base: __m512i) {
        let mut at = [0i32; 16];
        // SAFETY: `at` is 64 writable bytes; the store needs no alignment.
        unsafe { _mm512_storeu_si512(at.as_mut_ptr().cast(), base) };
        let ptr = voxels.as_ptr();
        for &b in at.iter().step_by(self.step) {
            for off in self.offsets.iter().flatten() {
                let p = b as isize + off;
                // A prefetch only reads ahead: it never faults or changes anything, whatever
                // the address, and `wrapping_offset` computes it without a bound.
                _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_offset(p).cast());
                _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_offset(p + sx).cast());
            }
        }
    }
}

/// Defines a sixteen-lane trilinear interior kernel compiled for `$features`; `$vbmi` says
/// whether it may look greys up by byte permutes (so only the VBMI build contains them and
/// inlines them).
macro_rules! trilinear_interior16 {
    ($name:ident, $features:literal, $vbmi:expr) => {
        /// [`trilinear_interior`] sixteen columns at a time with AVX-512, the same operations on
        /// each lane (so the same values), and the grey bytes packed by one instruction.
        ///
        /// # Safety
        /// The CPU must have `$features`, and `grid` must pass [`Avx2::new`]; every column
        /// of `row` must lie in the grid's interior (a partial last chunk is allowed).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(
            grid: &Grid<'_>,
            s0: [f32; 3],
            dx: [f32; 3],
            next: [f32; 3],
            table: &GreyTable,
            x0: usize,
            row: &mut [u8],
        ) {
            interior16_loop!($features);
            if row.is_empty() {
                return;
            }
            let mut r = Row16::new(grid, s0, dx, None);
            let fixed = r.fixed_axis(x0..x0 + row.len());
            let ahead = if fixed == 2 { r.ahead(next) } else { None };
            let (run, lo, hi) = table.run();
            // A run of at most 128 entries (a brain or subdural window) fits two registers: with
            // VBMI a byte permute looks the sixteen greys up instead of a gather.
            let short = ($vbmi && hi - lo < 128).then(|| {
                let mut bytes = [0u8; 128];
                let n = (hi - lo + 1) as usize;
                bytes[..n].copy_from_slice(&run[..n]);
                // SAFETY: `bytes` is 128 readable bytes; the loads need no alignment.
                unsafe {
                    (
                        _mm512_loadu_si512(bytes.as_ptr().cast()),
                        _mm512_loadu_si512(bytes.as_ptr().add(64).cast()),
                    )
                }
            });
            let lookup = (short, run.as_ptr().cast::<i32>(), lo, hi);
            match fixed {
                // SAFETY (each): the CPU has `$features`, and the axis was prepared.
                0 => unsafe { columns::<0>(&r, lookup, None, x0, row) },
                1 => unsafe { columns::<1>(&r, lookup, None, x0, row) },
                2 => unsafe { columns::<2>(&r, lookup, ahead, x0, row) },
                _ => unsafe { columns::<3>(&r, lookup, None, x0, row) },
            }
        }
    };
}

/// Defines the loop of a sixteen-lane trilinear interior kernel (see
/// [`trilinear_interior16!`]): for a row prepared by [`Row16::fixed_axis`] (`F`: its answer),
/// given the grey run's pointer and bounds and, where VBMI serves, the run in two registers.
macro_rules! interior16_loop {
    ($features:literal) => {
        /// # Safety
        /// The CPU must have `$features`, axis `F` must have been prepared, `short` must be
        /// `None` without VBMI, and `run_ptr` must hold `hi - lo + 4` bytes.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn columns<const F: usize>(
            r: &Row16<'_>,
            (short, run_ptr, lo, hi): (Option<(__m512i, __m512i)>, *const i32, i32, i32),
            ahead: Option<Ahead>,
            x0: usize,
            row: &mut [u8],
        ) {
            let sx = r.sx as isize;
            let (vlo, vhi) = (_mm512_set1_epi32(lo), _mm512_set1_epi32(hi));
            // Sixteen columns from x per turn, a partial last chunk included: its lanes past
            // the row compute values that are not kept, their reads clamped like the rest.
            let mut x = 0;
            while x < row.len() {
                // SAFETY: the CPU has AVX-512F and BW (this function's features include them).
                let (v, base) = unsafe { r.values_base::<F>(x0 + x) };
                if let Some(a) = &ahead {
                    // SAFETY: the CPU has AVX-512F.
                    unsafe { a.read(r.voxels, sx, base) };
                }
                let order = _mm512_cvttps_epi32(_mm512_add_ps(v, _mm512_set1_ps(32768.5)));
                // The table position of each of the sixteen pixels.
                let at = _mm512_sub_epi32(_mm512_min_epi32(_mm512_max_epi32(order, vlo), vhi), vlo);
                let greys = match short {
                    // SAFETY: `short` is set only where AVX-512 VBMI was found.
                    Some((t0, t1)) => unsafe { lookup128(t0, t1, at) },
                    None => {
                        // SAFETY: 0 <= at <= hi - lo and the run has hi - lo + 4 bytes.
                        let grey = unsafe { _mm512_i32gather_epi32::<1>(at, run_ptr) };
                        _mm512_cvtepi32_epi8(_mm512_and_si512(grey, _mm512_set1_epi32(0xff)))
                    }
                };
                let out = &mut row[x..];
                if out.len() >= 16 {
                    // SAFETY: `out` has at least 16 writable bytes; the store needs no
                    // alignment.
                    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), greys) };
                } else {
                    let mut last = [0u8; 16];
                    // SAFETY: `last` is 16 writable bytes.
                    unsafe { _mm_storeu_si128(last.as_mut_ptr().cast(), greys) };
                    let n = out.len();
                    out.copy_from_slice(&last[..n]);
                }
                x += 16;
            }
        }
    };
}

trilinear_interior16!(trilinear_interior16, "avx512f,avx512bw", false);
trilinear_interior16!(
    trilinear_interior16_vbmi,
    "avx512f,avx512bw,avx512vbmi",
    true
);

/// The bytes at sixteen positions (0-127) of a 128-byte table held in two registers.
///
/// # Safety
/// The CPU must have AVX-512F and VBMI.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vbmi")]
unsafe fn lookup128(t0: __m512i, t1: __m512i, at: __m512i) -> __m128i {
    let index = _mm512_castsi128_si512(_mm512_cvtepi32_epi8(at));
    _mm512_castsi512_si128(_mm512_permutex2var_epi8(t0, index, t1))
}

/// The value orders (stored value + 32768) of the voxels at indices `i`, `j`, `k`. The
/// index is clamped into the slice whatever the lanes hold; each voxel is read as the aligned
/// pair holding it (the voxel count is even, so the last voxel's pair is inside the slice)
/// and the wanted half shifted down.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn voxel_orders(grid: &Grid<'_>, i: __m256i, j: __m256i, k: __m256i) -> __m256i {
    let (sx, sxy) = (grid.sx as i32, grid.sxy as i32);
    let index = _mm256_add_epi32(
        i,
        _mm256_add_epi32(
            _mm256_mullo_epi32(j, _mm256_set1_epi32(sx)),
            _mm256_mullo_epi32(k, _mm256_set1_epi32(sxy)),
        ),
    );
    orders_at(grid.voxels, index)
}

/// The value orders of `voxels[index]`, each index first clamped into the slice. `voxels`
/// must have an even length (the last voxel's pair is then inside it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn orders_at(voxels: &[i16], index: __m256i) -> __m256i {
    debug_assert!(voxels.len().is_multiple_of(2) && !voxels.is_empty());
    let index = clamp_index(index, voxels.len() as i32 - 1);
    let pair = _mm256_srli_epi32::<1>(index);
    // SAFETY: 0 <= pair <= (len - 1) / 2 and the length is even, so the four bytes at
    // 4 * pair lie in the slice.
    let g = unsafe { _mm256_i32gather_epi32::<4>(voxels.as_ptr().cast::<i32>(), pair) };
    let shift = _mm256_slli_epi32::<4>(_mm256_and_si256(index, _mm256_set1_epi32(1)));
    let bits = _mm256_and_si256(_mm256_srlv_epi32(g, shift), _mm256_set1_epi32(0xffff));
    // Flipping the top bit of the stored value's 16 bits gives its value order.
    _mm256_xor_si256(bits, _mm256_set1_epi32(0x8000))
}

/// Nearest sampling of whole chunks of eight columns from `x0` whose positions all lie in
/// the grid's interior: no clamps are needed for the value, only one for safety.
///
/// # Safety
/// The CPU must have AVX2, `grid` must pass [`Avx2::new`], and `row.len()` must be a
/// multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn nearest_interior(
    grid: &Grid<'_>,
    s0: [f32; 3],
    dx: [f32; 3],
    table: &GreyTable,
    x0: usize,
    row: &mut [u8],
) {
    let half = _mm256_set1_ps(0.5);
    let all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (chunk, out) in row.chunks_exact_mut(8).enumerate() {
        let x = x0 + chunk * 8;
        let xf = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_set1_epi32(x as i32), lane));
        let [i, j, k] = [0, 1, 2]
            .map(|a| _mm256_cvttps_epi32(_mm256_add_ps(positions(s0[a], dx[a], xf), half)));
        store(voxel_orders(grid, i, j, k), all, table, 0, out);
    }
}

/// # Safety
/// The CPU must have AVX2, and `grid` must pass [`Avx2::new`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn trilinear_row(
    grid: &Grid<'_>,
    s0: [f32; 3],
    dx: [f32; 3],
    table: &GreyTable,
    background: u8,
    x0: usize,
    row: &mut [u8],
) {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (chunk, out) in row.chunks_mut(8).enumerate() {
        let xs = _mm256_add_epi32(_mm256_set1_epi32((x0 + chunk * 8) as i32), lane);
        // SAFETY: as this function's.
        unsafe { trilinear_lanes(grid, s0, dx, xs, table, background, out) };
    }
}

/// A row's two ends, `head` from column `xh` and `tail` from `xt`, by [`trilinear_row`]; when
/// each has at most four columns, as at most rows' ends, both take one set of eight lanes.
///
/// # Safety
/// As for [`trilinear_row`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn trilinear_ends(
    grid: &Grid<'_>,
    s0: [f32; 3],
    dx: [f32; 3],
    table: &GreyTable,
    background: u8,
    (xh, head): (usize, &mut [u8]),
    (xt, tail): (usize, &mut [u8]),
) {
    if head.len() > 4 || tail.len() > 4 {
        // SAFETY: as this function's.
        unsafe {
            trilinear_row(grid, s0, dx, table, background, xh, head);
            trilinear_row(grid, s0, dx, table, background, xt, tail);
        }
        return;
    }
    if head.is_empty() && tail.is_empty() {
        return;
    }
    let (h, t) = (xh as i32, xt as i32);
    let xs = _mm256_setr_epi32(h, h + 1, h + 2, h + 3, t, t + 1, t + 2, t + 3);
    let mut eight = [0u8; 8];
    // SAFETY: as this function's.
    unsafe { trilinear_lanes(grid, s0, dx, xs, table, background, &mut eight) };
    let n = head.len();
    head.copy_from_slice(&eight[..n]);
    let n = tail.len();
    tail.copy_from_slice(&eight[4..4 + n]);
}

/// The pixels of the eight canvas columns `xs` (the first `out.len()` written), by
/// [`trilinear_row`]'s clamped sampling.
///
/// # Safety
/// As for [`trilinear_row`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn trilinear_lanes(
    grid: &Grid<'_>,
    s0: [f32; 3],
    dx: [f32; 3],
    xs: __m256i,
    table: &GreyTable,
    background: u8,
    out: &mut [u8],
) {
    let n = grid.n.map(|n| n as i32);
    let (sx, sxy) = (grid.sx as i32, grid.sxy as i32);
    // A gather reads a pair of voxels (x and x + 1) from its index: the largest index whose
    // pair stays inside the slice.
    let max_pair = grid.voxels.len() as i32 - 2;
    let ptr = grid.voxels.as_ptr().cast::<i32>();
    let zero = _mm256_setzero_ps();
    let (p, mask) = lanes_at(grid, s0, dx, xs);
    // Clamp into [0, last]: the outer half voxel takes the edge value.
    let c =
        [0, 1, 2].map(|a| _mm256_min_ps(_mm256_max_ps(p[a], zero), _mm256_set1_ps(grid.last[a])));
    let i0 = _mm256_cvttps_epi32(c[0]);
    let j0 = _mm256_cvttps_epi32(c[1]);
    let k0 = _mm256_cvttps_epi32(c[2]);
    // Along x the pair starts at most at n - 2: at the last voxel the weight becomes 1
    // and the lerp returns the last voxel exactly, as the scalar path's does.
    let i0 = _mm256_min_epi32(i0, _mm256_set1_epi32(n[0] - 2));
    let fx = _mm256_sub_ps(c[0], _mm256_cvtepi32_ps(i0));
    let fy = _mm256_sub_ps(c[1], _mm256_cvtepi32_ps(j0));
    let fz = _mm256_sub_ps(c[2], _mm256_cvtepi32_ps(k0));
    let dj = _mm256_and_si256(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n[1] - 1), j0),
        _mm256_set1_epi32(sx),
    );
    let dk = _mm256_and_si256(
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n[2] - 1), k0),
        _mm256_set1_epi32(sxy),
    );
    let base = _mm256_add_epi32(
        i0,
        _mm256_add_epi32(
            _mm256_mullo_epi32(j0, _mm256_set1_epi32(sx)),
            _mm256_mullo_epi32(k0, _mm256_set1_epi32(sxy)),
        ),
    );
    let at = |o: __m256i| {
        let index = clamp_index(_mm256_add_epi32(base, o), max_pair);
        // SAFETY: 0 <= index <= len - 2, so the four bytes at 2 * index lie in the slice.
        unsafe { _mm256_i32gather_epi32::<2>(ptr, index) }
    };
    let g00 = at(_mm256_setzero_si256());
    let g10 = at(dj);
    let g01 = at(dk);
    let g11 = at(_mm256_add_epi32(dj, dk));
    let v = trilinear_value([g00, g10, g01, g11], [fx, fy, fz]);
    out_row(v, mask, table, background, out);
}

/// The trilinear value from the four gathered voxel pairs (x and x + 1 at rows j and j + 1 of
/// slices k and k + 1, as i16 halves of each lane) and the weights along x, y and z: the
/// scalar sampler's lerps in its order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn trilinear_value(pairs: [__m256i; 4], [fx, fy, fz]: [__m256; 3]) -> __m256 {
    // As in `Row16::values`: the voxel at x and the exact step to x + 1 by multiply-adds.
    let (first, step) = (_mm256_set1_epi32(1), _mm256_set1_epi32(0x0001_ffff));
    let lerp_pair = |g: __m256i| {
        let a = _mm256_cvtepi32_ps(_mm256_madd_epi16(g, first));
        let d = _mm256_cvtepi32_ps(_mm256_madd_epi16(g, step));
        _mm256_add_ps(a, _mm256_mul_ps(d, fx))
    };
    let lerp =
        |a: __m256, b: __m256, f: __m256| _mm256_add_ps(a, _mm256_mul_ps(_mm256_sub_ps(b, a), f));
    let [c00, c10, c01, c11] = pairs.map(lerp_pair);
    let c0 = lerp(c00, c10, fy);
    let c1 = lerp(c01, c11, fy);
    lerp(c0, c1, fz)
}

/// Grey for interpolated stored values, as `GreyTable::get_f32` computes it per value.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn out_row(v: __m256, mask: __m256, table: &GreyTable, background: u8, out: &mut [u8]) {
    let order = _mm256_cvttps_epi32(_mm256_add_ps(v, _mm256_set1_ps(32768.5)));
    store(order, mask, table, background, out);
}

/// Per canvas column of a separable nearest row: the voxel's offset from the row's base.
/// Built once per frame; its offsets are known to lie below `end`.
pub(crate) struct ColumnOffsets {
    at: Vec<i32>,
    /// One past the largest offset.
    end: usize,
}

impl ColumnOffsets {
    /// The number of columns.
    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }

    /// Offsets for a run of columns; `None` when one does not fit an i32.
    pub(crate) fn new(offsets: impl Iterator<Item = usize>) -> Option<Self> {
        let at = offsets
            .map(|o| i32::try_from(o).ok())
            .collect::<Option<Vec<i32>>>()?;
        let end = at.iter().map(|&o| o as usize + 1).max().unwrap_or(0);
        Some(Self { at, end })
    }
}

/// # Safety
/// The CPU must have AVX2; `out` must be as long as the offsets.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn nearest_line(
    voxels: &[i16],
    base: usize,
    offsets: &ColumnOffsets,
    table: &GreyTable,
    out: &mut [u8],
) {
    let all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    let vbase = _mm256_set1_epi32(base as i32);
    let mut x = 0;
    while x + 8 <= out.len() {
        // SAFETY: x + 8 <= out.len(), the number of offsets.
        let o = unsafe { _mm256_loadu_si256(offsets.at.as_ptr().add(x).cast()) };
        let order = orders_at(voxels, _mm256_add_epi32(vbase, o));
        store(order, all, table, 0, &mut out[x..x + 8]);
        x += 8;
    }
    for x in x..out.len() {
        out[x] = table.get(voxels[base + offsets.at[x] as usize]);
    }
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

impl Avx2 {
    /// The separable path's slab step for one canvas row: pixel x interpolates `line`
    /// between the taps' positions (as [`Avx2::lerp_line`]) and combines the value into
    /// `acc[x]` (`f32::max`, `f32::min` or `+`, as the scalar path does; values are never NaN).
    ///
    /// # Panics
    /// If a tap's position lies outside `line` or `acc` is not as long as the taps.
    pub(crate) fn lerp_combine(self, line: &[f32], taps: &LineTaps, how: Combine, acc: &mut [f32]) {
        assert_eq!(acc.len(), taps.fx.len(), "one value per tap");
        assert!(taps.end <= line.len(), "line positions outside the line");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `self` exists only where `detected()` found AVX2; every position is below
        // `taps.end`, which was checked against the line's length.
        unsafe {
            lerp_combine(line, taps, how, acc)
        }
    }
}

/// # Safety
/// The CPU must have AVX2; `taps.end` must not exceed `line.len()`, and `acc` must be as
/// long as the taps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lerp_combine(line: &[f32], taps: &LineTaps, how: Combine, acc: &mut [f32]) {
    let (c0, c1, fx) = (&taps.c0, &taps.c1, &taps.fx);
    let ptr = line.as_ptr();
    let mut x = 0;
    while x + 8 <= acc.len() {
        // SAFETY: x + 8 <= acc.len(), which equals the lengths of c0, c1 and fx; every
        // position lies inside `line` (checked by the caller).
        unsafe {
            let i0 = _mm256_loadu_si256(c0.as_ptr().add(x).cast());
            let i1 = _mm256_loadu_si256(c1.as_ptr().add(x).cast());
            let f = _mm256_loadu_ps(fx.as_ptr().add(x));
            let p = _mm256_i32gather_ps::<4>(ptr, i0);
            let q = _mm256_i32gather_ps::<4>(ptr, i1);
            let v = _mm256_add_ps(p, _mm256_mul_ps(_mm256_sub_ps(q, p), f));
            let a = acc.as_mut_ptr().add(x);
            let joined = match how {
                Combine::First => v,
                Combine::Max => _mm256_max_ps(_mm256_loadu_ps(a), v),
                Combine::Min => _mm256_min_ps(_mm256_loadu_ps(a), v),
                Combine::Add => _mm256_add_ps(_mm256_loadu_ps(a), v),
            };
            _mm256_storeu_ps(a, joined);
        }
        x += 8;
    }
    for x in x..acc.len() {
        let (p, q) = (line[c0[x] as usize], line[c1[x] as usize]);
        let v = p + (q - p) * fx[x];
        acc[x] = match how {
            Combine::First => v,
            Combine::Max => acc[x].max(v),
            Combine::Min => acc[x].min(v),
            Combine::Add => acc[x] + v,
        };
    }
}

/// Per canvas column of a separable row: the two line positions and the weight of the
/// second. Built once per frame; its positions are known to lie below `end`.
pub(crate) struct LineTaps {
    c0: Vec<u32>,
    c1: Vec<u32>,
    fx: Vec<f32>,
    /// One past the largest position.
    end: usize,
}

impl LineTaps {
    /// Taps from `(position, position, weight)` per column.
    pub(crate) fn new(taps: impl Iterator<Item = (u32, u32, f32)>) -> Self {
        let (mut c0, mut c1, mut fx) = (Vec::new(), Vec::new(), Vec::new());
        for (a, b, f) in taps {
            c0.push(a);
            c1.push(b);
            fx.push(f);
        }
        let end = c0
            .iter()
            .chain(&c1)
            .map(|&c| c as usize + 1)
            .max()
            .unwrap_or(0);
        Self { c0, c1, fx, end }
    }

    /// Each column's positions and weight.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize, f32)> + '_ {
        self.c0
            .iter()
            .zip(&self.c1)
            .zip(&self.fx)
            .map(|((&a, &b), &f)| (a as usize, b as usize, f))
    }
}

/// # Safety
/// The CPU must have AVX2; `taps.end` must not exceed `line.len()`, and `out` must be as
/// long as the taps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn lerp_line(line: &[f32], taps: &LineTaps, table: &GreyTable, out: &mut [u8]) {
    let (c0, c1, fx) = (&taps.c0, &taps.c1, &taps.fx);
    let all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    let ptr = line.as_ptr();
    let mut x = 0;
    while x + 8 <= out.len() {
        // SAFETY: x + 8 <= out.len(), which equals the lengths of c0, c1 and fx.
        let (i0, i1, f) = unsafe {
            (
                _mm256_loadu_si256(c0.as_ptr().add(x).cast()),
                _mm256_loadu_si256(c1.as_ptr().add(x).cast()),
                _mm256_loadu_ps(fx.as_ptr().add(x)),
            )
        };
        // SAFETY: every position lies inside `line` (checked by the caller).
        let (p, q) = unsafe {
            (
                _mm256_i32gather_ps::<4>(ptr, i0),
                _mm256_i32gather_ps::<4>(ptr, i1),
            )
        };
        let v = _mm256_add_ps(p, _mm256_mul_ps(_mm256_sub_ps(q, p), f));
        out_row(v, all, table, 0, &mut out[x..x + 8]);
        x += 8;
    }
    for x in x..out.len() {
        let (p, q) = (line[c0[x] as usize], line[c1[x] as usize]);
        out[x] = table.get_f32(p + (q - p) * fx[x]);
    }
}

/// # Safety
/// The CPU must have AVX2, and `grid` must pass [`Avx2::new`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn nearest_row(
    grid: &Grid<'_>,
    s0: [f32; 3],
    dx: [f32; 3],
    table: &GreyTable,
    background: u8,
    x0: usize,
    row: &mut [u8],
) {
    let n = grid.n.map(|n| n as i32);
    let half = _mm256_set1_ps(0.5);
    for (chunk, out) in row.chunks_mut(8).enumerate() {
        let (p, mask) = lanes(grid, s0, dx, x0 + chunk * 8);
        let [i, j, k] = [0, 1, 2]
            .map(|a| clamp_index(_mm256_cvttps_epi32(_mm256_add_ps(p[a], half)), n[a] - 1));
        store(voxel_orders(grid, i, j, k), mask, table, background, out);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::grid::{NearestSampler, Sampler, TrilinearSampler};
    use crate::math::V3;
    use crate::volume::{Geometry, Rescale, Volume};
    use crate::window::{GreyPipeline, Voi, Window};

    /// Random voxels on a small grid with an even voxel count.
    pub(crate) fn volume(seed: u64, dims: [usize; 3]) -> Volume {
        let g = Geometry::axis_aligned(dims, V3::default(), [1.0, 1.0, 1.0]).expect("geometry");
        let mut state = seed | 1;
        let voxels: Vec<i16> = (0..dims.iter().product::<usize>())
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 4000) as i16 - 2000
            })
            .collect();
        Volume::new(g, voxels, Rescale::default()).expect("volume")
    }

    /// A reproducible stream of numbers in [0, 1).
    fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut state = seed | 1;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1_000_000) as f32 / 1_000_000.0
        }
    }

    /// The grey table of a linear window over raw stored values.
    pub(crate) fn linear_table(window: Window) -> GreyTable {
        GreyPipeline {
            rescale: Rescale::default(),
            voi: Voi::Window(window),
            monochrome1: false,
            invert: false,
        }
        .table()
        .expect("table")
    }

    fn scalar_row<S: Sampler>(
        s: &S,
        s0: [f32; 3],
        dx: [f32; 3],
        table: &GreyTable,
        row: &mut [u8],
    ) {
        for (x, px) in row.iter_mut().enumerate() {
            let xf = x as f32;
            let p = [s0[0] + dx[0] * xf, s0[1] + dx[1] * xf, s0[2] + dx[2] * xf];
            *px = s.sample(p).map_or(7, |v| table.get_f32(v));
        }
    }

    /// Rows that start outside, cross the volume at odd angles (edges and corners included)
    /// and leave it: the AVX2 rows equal the scalar rows byte for byte.
    #[test]
    fn kernels_equal_the_scalar_samplers() {
        let table = linear_table(Window::linear(30.0, 3000.0));
        let dims = [13, 6, 5];
        let v = volume(99, dims);
        let grid = Grid::new(&v);
        let Some(simd) = Avx2::new(&grid) else {
            // Without AVX2 there is nothing to compare; the scalar path is what runs.
            assert!(
                !detected(),
                "an AVX2 CPU must get the kernels for this grid"
            );
            return;
        };
        let mut next = uniform(12345u64);
        let (mut compared, mut interior) = (0, 0);
        for _ in 0..2000 {
            let s0 = [next() * 20.0 - 4.0, next() * 10.0 - 2.0, next() * 9.0 - 2.0];
            let dx = [next() * 0.6 - 0.3, next() * 0.4 - 0.2, next() * 0.3 - 0.15];
            let w = 1 + (next() * 60.0) as usize;
            let (mut a, mut b) = (vec![0u8; w], vec![0u8; w]);
            for trilinear in [false, true] {
                // The kernels also start mid-row: from a column other than 0 they must give
                // that column onward of the same row.
                let x0 = (next() * w as f32) as usize % w;
                b.fill(0);
                if trilinear {
                    let s = TrilinearSampler(grid);
                    scalar_row(&s, s0, dx, &table, &mut a);
                    simd.trilinear_row(&grid, s0, dx, s0, &table, 7, 0, &mut b[..x0]);
                    simd.trilinear_row(&grid, s0, dx, s0, &table, 7, x0, &mut b[x0..]);
                } else {
                    let s = NearestSampler(grid);
                    scalar_row(&s, s0, dx, &table, &mut a);
                    simd.nearest_row(&grid, s0, dx, &table, 7, 0, &mut b[..x0]);
                    simd.nearest_row(&grid, s0, dx, &table, 7, x0, &mut b[x0..]);
                }
                assert_eq!(a, b, "trilinear {trilinear}, s0 {s0:?}, dx {dx:?}, x0 {x0}");
                let (ia, ib) = interior_chunks(&grid, s0, dx, 0, w);
                interior += ib - ia;
                // Outside the row's span every pixel is background.
                let (lo, hi) = grid.span(s0, dx, w);
                assert!(
                    a[..lo].iter().chain(&a[hi..]).all(|&g| g == 7),
                    "span {lo}..{hi} of {a:?}"
                );
                compared += a.iter().filter(|&&g| g != 7).count();
            }
        }
        assert!(
            compared > 10_000,
            "only {compared} pixels inside the volume"
        );
        assert!(
            interior > 2_000,
            "only {interior} pixels took the interior kernels"
        );
        // Exactly on the last voxel centres, where the kernels shift the x pair.
        let last = [12.0, 5.0, 4.0];
        let (mut a, mut b) = (vec![0u8; 3], vec![0u8; 3]);
        scalar_row(
            &TrilinearSampler(grid),
            last,
            [0.0, 0.0, 0.0],
            &table,
            &mut a,
        );
        simd.trilinear_row(&grid, last, [0.0, 0.0, 0.0], last, &table, 7, 0, &mut b);
        assert_eq!(a, b);
        assert_eq!(a[0], table.get(v.get(12, 5, 4).expect("voxel")));
    }

    /// Long rows through a larger grid, so the interior runs cover whole chunks of sixteen:
    /// on a CPU with AVX-512 they take the sixteen-lane kernel, whose rows must equal the
    /// scalar rows byte for byte too.
    #[test]
    fn wide_kernels_equal_the_scalar_samplers() {
        // A wide window (its run is gathered) and a brain-like one (81 entries: looked up by
        // a byte permute where the CPU has VBMI).
        for window in [Window::linear(30.0, 3000.0), Window::linear(40.0, 80.0)] {
            wide_rows_equal_scalar_rows(&linear_table(window));
        }
    }

    fn wide_rows_equal_scalar_rows(table: &GreyTable) {
        let v = volume(7, [64, 20, 12]);
        let grid = Grid::new(&v);
        let Some(simd) = Avx2::new(&grid) else {
            assert!(
                !detected(),
                "an AVX2 CPU must get the kernels for this grid"
            );
            return;
        };
        let mut next = uniform(777u64);
        let mut wide_pixels = 0;
        for _ in 0..500 {
            let s0 = [next() * 8.0 - 4.0, next() * 18.0 + 1.0, next() * 10.0 + 1.0];
            let dx = [
                next() * 0.6 + 0.1,
                next() * 0.08 - 0.04,
                next() * 0.06 - 0.03,
            ];
            let w = 40 + (next() * 120.0) as usize;
            let (mut a, mut b) = (vec![0u8; w], vec![0u8; w]);
            scalar_row(&TrilinearSampler(grid), s0, dx, table, &mut a);
            simd.trilinear_row(&grid, s0, dx, s0, table, 7, 0, &mut b);
            assert_eq!(a, b, "s0 {s0:?}, dx {dx:?}");
            let (ia, ib) = interior_chunks(&grid, s0, dx, 0, w);
            wide_pixels += (ib - ia) / 16 * 16;
        }
        assert!(
            wide_pixels > 10_000,
            "only {wide_pixels} pixels in sixteen-column chunks"
        );
        if wide() {
            assert!(simd.wide, "an AVX-512 CPU must get the sixteen-lane kernel");
        }
    }

    /// Rows along which one axis' position never changes (its step zero, or too small to move
    /// the rounded sum) take the kernels' fixed-axis form, and still give the scalar
    /// sampler's pixels and slab values; a step that moves the sum by one unit somewhere
    /// does not count as fixed.
    #[test]
    fn rows_with_a_fixed_axis_equal_the_scalar_sampler() {
        let v = volume(11, [64, 40, 24]);
        let grid = Grid::new(&v);
        let Some(simd) = Avx2::new(&grid) else {
            return;
        };
        let table = linear_table(Window::linear(40.0, 80.0));
        let mut next = uniform(4242u64);
        let mut fixed_rows = 0;
        for row in 0..300 {
            let axis = row % 3;
            let mut s0 = [
                next() * 50.0 + 4.0,
                next() * 30.0 + 4.0,
                next() * 16.0 + 4.0,
            ];
            let mut dx = [next() * 0.5 - 0.25, next() * 0.3 - 0.15, next() * 0.2 - 0.1];
            dx[axis] = match row % 4 {
                0 => 0.0,
                1 => -0.0,
                _ => (next() - 0.5) * 1e-9,
            };
            if row % 7 == 0 {
                s0[axis] = s0[axis].floor();
            }
            let w = 30 + (next() * 90.0) as usize;
            let (mut a, mut b) = (vec![0u8; w], vec![0u8; w]);
            scalar_row(&TrilinearSampler(grid), s0, dx, &table, &mut a);
            simd.trilinear_row(&grid, s0, dx, s0, &table, 7, 0, &mut b);
            assert_eq!(a, b, "s0 {s0:?}, dx {dx:?}");
            let (ia, ib) = interior_columns(&grid, s0, dx, 0, w);
            if ia < ib {
                let found = Row16::new(&grid, s0, dx, None).fixed_axis(ia..ib);
                assert!(found <= axis, "axis {axis} is fixed, found {found}");
                fixed_rows += 1;
            }
            // The slab values: a step added after the row's position, over the columns whose
            // stepped position lies in the interior.
            let step = [0.25f32, -0.5, 0.75];
            let (ia, ib) = interior_columns(&grid, [0, 1, 2].map(|c| s0[c] + step[c]), dx, 0, w);
            if ia < ib {
                let mut values = vec![0f32; ib - ia];
                if simd.trilinear_values(&grid, s0, dx, step, ia, &mut values) {
                    for (x, &got) in (ia..ib).zip(&values) {
                        let p = [0, 1, 2].map(|c| (s0[c] + dx[c] * x as f32) + step[c]);
                        let want = TrilinearSampler(grid).sample(p);
                        assert_eq!(Some(got), want, "s0 {s0:?}, dx {dx:?}, x {x}");
                    }
                }
            }
        }
        assert!(fixed_rows > 200, "only {fixed_rows} rows had an interior");
        // A step that moves the rounded position by one unit between the ends is not fixed.
        let (s0, dx) = ([20.5f32, 10.25, 8.0], [0.3f32, 0.1, 4e-7]);
        let mut r = Row16::new(&grid, s0, dx, None);
        assert_ne!(r.position(2, 0), r.position(2, 40));
        assert_eq!(r.fixed_axis(0..41), 3);
    }

    /// A row with k fixed reads ahead only the slices its next row adds (within the volume),
    /// and reading ahead changes no pixel.
    #[test]
    fn rows_read_ahead_only_the_next_rows_new_slices() {
        let v = volume(5, [64, 40, 24]);
        let grid = Grid::new(&v);
        let sxy = (64 * 40) as isize;
        let (s0, dx) = ([6.5f32, 8.25, 10.4], [0.9f32, 0.35, 0.0]);
        let mut r = Row16::new(&grid, s0, dx, None);
        assert_eq!(r.fixed_axis(0..40), 2);
        let offsets = |k: f32| r.ahead([0.0, 0.0, k]).map(|a| a.offsets);
        // Slices 10 and 11 now: 11.2 reads 11 and 12 (12 is new), 9.7 reads 9 (new) and 10.
        assert_eq!(offsets(11.2), Some([None, Some(2 * sxy)]));
        assert_eq!(offsets(9.7), Some([Some(-sxy), None]));
        assert_eq!(offsets(10.9), None);
        assert_eq!(offsets(13.5), Some([Some(3 * sxy), Some(4 * sxy)]));
        // Slice 24 is past the volume's last (23).
        assert_eq!(offsets(23.5), Some([Some(13 * sxy), None]));
        assert_eq!(offsets(30.0), None);
        // Along i a cache line holds 32 voxels, and j moves 0.35 per pixel: every fifth lane.
        assert_eq!(r.ahead([0.0, 0.0, 12.0]).map(|a| a.step), Some(5));
        let Some(simd) = Avx2::new(&grid) else {
            return;
        };
        let table = linear_table(Window::linear(40.0, 80.0));
        let mut want = vec![0u8; 48];
        scalar_row(&TrilinearSampler(grid), s0, dx, &table, &mut want);
        for next in [s0, [6.1, 9.2, 11.3], [6.1, 9.2, 9.1], [6.1, 9.2, 40.0]] {
            let mut got = vec![0u8; 48];
            simd.trilinear_row(&grid, s0, dx, next, &table, 7, 0, &mut got);
            assert_eq!(got, want, "next row at {next:?}");
        }
    }

    /// The slab step's kernel equals the scalar lerp and combine, for each way of combining,
    /// on a row whose length is not a multiple of eight.
    #[test]
    fn slab_steps_equal_the_scalar_combine() {
        let Some(simd) = Avx2::detect() else {
            return;
        };
        let line: Vec<f32> = (0..40)
            .map(|i| ((i * 37) % 23) as f32 * 11.5 - 90.0)
            .collect();
        let taps = LineTaps::new((0..29u32).map(|x| (x, (x + 1).min(39), (x % 7) as f32 / 7.0)));
        let scalar = |acc: &mut [f32], how: Combine| {
            for (x, (c0, c1, f)) in taps.iter().enumerate() {
                let v = line[c0] + (line[c1] - line[c0]) * f;
                acc[x] = match how {
                    Combine::First => v,
                    Combine::Max => acc[x].max(v),
                    Combine::Min => acc[x].min(v),
                    Combine::Add => acc[x] + v,
                };
            }
        };
        for how in [Combine::First, Combine::Max, Combine::Min, Combine::Add] {
            let start: Vec<f32> = (0..29).map(|x| (x as f32 - 14.0) * 9.25).collect();
            let (mut a, mut b) = (start.clone(), start);
            scalar(&mut a, how);
            simd.lerp_combine(&line, &taps, how, &mut b);
            assert_eq!(a, b);
        }
    }

    /// The separable nearest kernel equals `table.get` of each column's voxel, on a row
    /// whose length is not a multiple of eight, with offsets that jump and repeat.
    #[test]
    fn nearest_lines_equal_the_table() {
        let Some(simd) = Avx2::detect() else {
            return;
        };
        let table = linear_table(Window::linear(40.0, 80.0));
        let v = volume(3, [20, 10, 4]);
        let offsets = [
            0usize, 1, 1, 3, 7, 8, 19, 20, 21, 40, 41, 60, 61, 62, 199, 198, 0,
        ];
        let cols = ColumnOffsets::new(offsets.iter().copied()).expect("offsets");
        for base in [0, 20, 400, 800 - 200] {
            let mut out = vec![0u8; offsets.len()];
            simd.nearest_line(v.voxels(), base, &cols, &table, &mut out);
            let want: Vec<u8> = offsets
                .iter()
                .map(|&o| table.get(v.voxels()[base + o]))
                .collect();
            assert_eq!(out, want, "base {base}");
        }
    }

    #[test]
    fn odd_or_flat_grids_take_the_scalar_path() {
        let odd = volume(1, [3, 3, 3]);
        assert!(Avx2::new(&Grid::new(&odd)).is_none());
        let flat = volume(1, [4, 4, 1]);
        assert!(Avx2::new(&Grid::new(&flat)).is_none());
    }
}
