//! The sixteen-lane AVX-512 kernels (F and BW): trilinear over a row's interior, where no
//! clamp applies (a partial last chunk included), with a row along which one axis never moves
//! taking that axis once, the next row's new slice read ahead, and greys looked up by byte
//! permutes where the CPU has VBMI; and a slab step's values. Reached only through
//! `super::Avx2`.

use std::arch::x86_64::*;

use crate::sampler::Grid;
use crate::window::GreyTable;

/// One row's constants for the sixteen-lane trilinear kernels: the voxels, their strides and
/// the row's start and step.
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
    /// `s0 + dx * x`, plus the step if any), with the operations of
    /// [`super::avx2::trilinear_interior`] in its order: the scalar sampler's values where
    /// the positions lie in the grid's interior. Elsewhere the lanes
    /// hold values that mean nothing, but every read stays in the slice.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and BW, and the grid must pass [`super::Avx2::new`].
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
/// The CPU must have AVX-512F and BW, and `grid` must pass [`super::Avx2::new`].
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn trilinear_values16(
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
#[derive(Clone, Copy)]
struct Ahead {
    offsets: [Option<isize>; 2],
    step: usize,
}

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
        /// [`super::avx2::trilinear_interior`] sixteen columns at a time with AVX-512, the same
        /// operations on each lane (so the same values), and the grey bytes packed by one
        /// instruction.
        ///
        /// # Safety
        /// The CPU must have `$features`, and `grid` must pass [`super::Avx2::new`]; every column
        /// of `row` must lie in the grid's interior (a partial last chunk is allowed).
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $name(
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
#[target_feature(enable = "avx512f,avx512vbmi")]
unsafe fn lookup128(t0: __m512i, t1: __m512i, at: __m512i) -> __m128i {
    let index = _mm512_castsi128_si512(_mm512_cvtepi32_epi8(at));
    _mm512_castsi512_si128(_mm512_permutex2var_epi8(t0, index, t1))
}

#[cfg(test)]
mod tests {
    use super::super::{Avx2, detected, interior_chunks, interior_columns, wide};
    use super::*;
    use crate::sampler::{Sampler, TrilinearSampler};
    use crate::testing::{linear_table, scalar_row, uniform, volume};
    use crate::window::Window;

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
}
