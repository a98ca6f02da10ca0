//! The eight-lane AVX2 kernels: the per-pixel path's rows (nearest and trilinear, clamped at
//! a row's ends, unclamped in its interior) and the separable path's lines (nearest offsets,
//! lerp to grey, lerp and combine a slab step). Reached only through `super::Avx2`.

use std::arch::x86_64::*;

use crate::lines::{ColumnOffsets, LineTaps};
use crate::sampler::Grid;
use crate::slab::Combine;
use crate::window::GreyTable;

/// The eight lanes' sample positions along one axis, `s + d * x`, as the scalar path
/// computes them (a multiply, then an add).
#[target_feature(enable = "avx2")]
pub(super) fn positions(s: f32, d: f32, xf: __m256) -> __m256 {
    _mm256_add_ps(_mm256_set1_ps(s), _mm256_mul_ps(_mm256_set1_ps(d), xf))
}

/// The sample positions of the eight pixels from canvas column `x` (pixel x at
/// `s0 + dx * x`), and which of them lie inside the sampling domain.
#[target_feature(enable = "avx2")]
pub(super) fn lanes(
    grid: &Grid<'_>,
    s0: [f32; 3],
    dx: [f32; 3],
    x: usize,
) -> ([__m256; 3], __m256) {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    lanes_at(
        grid,
        s0,
        dx,
        _mm256_add_epi32(_mm256_set1_epi32(x as i32), lane),
    )
}

/// [`lanes`] for the eight canvas columns `xs`.
#[target_feature(enable = "avx2")]
pub(super) fn lanes_at(
    grid: &Grid<'_>,
    s0: [f32; 3],
    dx: [f32; 3],
    xs: __m256i,
) -> ([__m256; 3], __m256) {
    let xf = _mm256_cvtepi32_ps(xs);
    let p = [0, 1, 2].map(|a| positions(s0[a], dx[a], xf));
    let mask = _mm256_and_ps(
        inside(p[0], grid.last[0]),
        _mm256_and_ps(inside(p[1], grid.last[1]), inside(p[2], grid.last[2])),
    );
    (p, mask)
}

/// Lanes inside the sampling domain: within half a voxel of the outer voxel centres.
#[target_feature(enable = "avx2")]
pub(super) fn inside(p: __m256, last: f32) -> __m256 {
    _mm256_and_ps(
        _mm256_cmp_ps::<_CMP_GE_OQ>(p, _mm256_set1_ps(-0.5)),
        _mm256_cmp_ps::<_CMP_LT_OQ>(p, _mm256_set1_ps(last + 0.5)),
    )
}

/// Clamps each lane into `[0, hi]`.
#[target_feature(enable = "avx2")]
pub(super) fn clamp_index(v: __m256i, hi: i32) -> __m256i {
    _mm256_min_epi32(
        _mm256_max_epi32(v, _mm256_setzero_si256()),
        _mm256_set1_epi32(hi),
    )
}

/// Writes the eight (or fewer, at the row's end) pixels: the table's grey for lanes inside
/// the volume, the background for the others. `order` holds value orders (stored value +
/// 32768, any i32).
#[target_feature(enable = "avx2")]
pub(super) fn store(
    order: __m256i,
    mask: __m256,
    table: &GreyTable,
    background: u8,
    out: &mut [u8],
) {
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

/// Trilinear sampling of whole chunks of eight columns from `x0` whose positions all lie in
/// the grid's interior (see `Grid::interior`): the clamps and edge cases of
/// [`trilinear_row`] change nothing there and are left out; the values are the same.
///
/// # Safety
/// The CPU must have AVX2, `grid` must pass [`super::Avx2::new`], and `row.len()` must be a
/// multiple of 8.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn trilinear_interior(
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

/// The value orders (stored value + 32768) of the voxels at indices `i`, `j`, `k`. The
/// index is clamped into the slice whatever the lanes hold; each voxel is read as the aligned
/// pair holding it (the voxel count is even, so the last voxel's pair is inside the slice)
/// and the wanted half shifted down.
#[target_feature(enable = "avx2")]
pub(super) fn voxel_orders(grid: &Grid<'_>, i: __m256i, j: __m256i, k: __m256i) -> __m256i {
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
#[target_feature(enable = "avx2")]
pub(super) fn orders_at(voxels: &[i16], index: __m256i) -> __m256i {
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
/// The CPU must have AVX2, `grid` must pass [`super::Avx2::new`], and `row.len()` must be a
/// multiple of 8.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn nearest_interior(
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
/// The CPU must have AVX2, and `grid` must pass [`super::Avx2::new`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn trilinear_row(
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
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn trilinear_ends(
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
#[target_feature(enable = "avx2")]
#[inline]
pub(super) unsafe fn trilinear_lanes(
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
#[target_feature(enable = "avx2")]
pub(super) fn trilinear_value(pairs: [__m256i; 4], [fx, fy, fz]: [__m256; 3]) -> __m256 {
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
#[target_feature(enable = "avx2")]
pub(super) fn out_row(v: __m256, mask: __m256, table: &GreyTable, background: u8, out: &mut [u8]) {
    let order = _mm256_cvttps_epi32(_mm256_add_ps(v, _mm256_set1_ps(32768.5)));
    store(order, mask, table, background, out);
}

/// # Safety
/// The CPU must have AVX2; `out` must be as long as the offsets.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn nearest_line(
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
        let o = unsafe { _mm256_loadu_si256(offsets.at().as_ptr().add(x).cast()) };
        let order = orders_at(voxels, _mm256_add_epi32(vbase, o));
        store(order, all, table, 0, &mut out[x..x + 8]);
        x += 8;
    }
    for x in x..out.len() {
        out[x] = table.get(voxels[base + offsets.at()[x] as usize]);
    }
}

/// # Safety
/// The CPU must have AVX2; `taps.end` must not exceed `line.len()`, and `acc` must be as
/// long as the taps.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn lerp_combine(line: &[f32], taps: &LineTaps, how: Combine, acc: &mut [f32]) {
    let (c0, c1, fx) = taps.parts();
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

/// # Safety
/// The CPU must have AVX2; `taps.end` must not exceed `line.len()`, and `out` must be as
/// long as the taps.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn lerp_line(line: &[f32], taps: &LineTaps, table: &GreyTable, out: &mut [u8]) {
    let (c0, c1, fx) = taps.parts();
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
/// The CPU must have AVX2, and `grid` must pass [`super::Avx2::new`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn nearest_row(
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
mod tests {
    use super::super::{Avx2, detected, interior_chunks};
    use super::*;
    use crate::sampler::{NearestSampler, TrilinearSampler};
    use crate::testing::{linear_table, scalar_row, uniform, volume};
    use crate::window::Window;

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
}
