//! Sampling a volume at f32 voxel coordinates: `Grid` (a volume's voxels with strides and
//! limits precomputed, and the columns of a row that can meet the volume or lie in its
//! interior) and the `Sampler` trait with its nearest and trilinear samplers, monomorphised
//! per mode so the compiler inlines them. `Volume::sample_*` are the readable definitions;
//! these must agree with them (a property test checks it), and every SIMD kernel must agree
//! with these.

use crate::volume::Volume;

/// A volume's voxels with what the samplers need precomputed.
#[derive(Clone, Copy)]
pub(crate) struct Grid<'a> {
    pub(crate) voxels: &'a [i16],
    pub(crate) n: [usize; 3],
    /// Largest index along each axis, as f32.
    pub(crate) last: [f32; 3],
    pub(crate) sx: usize,
    pub(crate) sxy: usize,
}

impl<'a> Grid<'a> {
    pub(crate) fn new(volume: &'a Volume) -> Self {
        let n = volume.geometry().dims();
        Self {
            voxels: volume.voxels(),
            n,
            last: n.map(|d| (d - 1) as f32),
            sx: n[0],
            sxy: n[0] * n[1],
        }
    }

    /// The canvas columns `[a, b)` of a row (pixel x samples `s0 + dx * x`, x < `w`) outside
    /// which no pixel can lie inside the sampling domain: the exact interval, widened by a
    /// pixel at each end for rounding. Columns outside it are background; the samplers still
    /// decide each column inside it.
    pub(crate) fn span(&self, s0: [f32; 3], dx: [f32; 3], w: usize) -> (usize, usize) {
        let Some((t0, t1)) = crossing(s0, dx, true, |a, _, _| {
            (-0.5, f64::from(self.last[a]) + 0.5)
        }) else {
            return (0, 0);
        };
        let (lo, hi) = ((t0 - 1.0).max(0.0), (t1 + 2.0).min(w as f64));
        if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
            return (0, 0);
        }
        // Non-finite bounds (a huge step) fall back to the whole row.
        let a = if lo.is_finite() {
            lo.floor().max(0.0) as usize
        } else {
            0
        };
        let b = if hi.is_finite() {
            (hi.ceil() as usize).min(w)
        } else {
            w
        };
        (a.min(b), b)
    }

    /// The canvas columns `[a, b)` of a row (pixel x samples `s0 + dx * x`, x < `w`) whose
    /// positions, computed in f32 as the samplers do, lie in `[0, last)` along every axis:
    /// there no clamp changes a position, and the voxel above each lies in the volume. The
    /// exact interval is shrunk by a margin of a hundredth of a voxel (far above f32's
    /// rounding of positions below 2^16) and a pixel at each end. Possibly empty.
    pub(crate) fn interior(&self, s0: [f32; 3], dx: [f32; 3], w: usize) -> (usize, usize) {
        let Some((t0, t1)) = crossing(s0, dx, false, |a, s, d| {
            let margin = 0.01 + 1e-6 * (s.abs() + d.abs() * w as f64);
            (margin, f64::from(self.last[a]) - margin)
        }) else {
            return (0, 0);
        };
        let (lo, hi) = ((t0 + 1.0).max(0.0), (t1 - 1.0).min(w as f64));
        if !(lo.is_finite() && hi.is_finite()) || lo >= hi {
            return (0, 0);
        }
        let a = lo.ceil().max(0.0) as usize;
        let b = (hi.floor().max(0.0) as usize + 1).min(w);
        (a.min(b), b)
    }

    /// Inside the sampling domain: within half a voxel of the outer voxel centres.
    #[inline(always)]
    fn inside(&self, p: [f32; 3]) -> bool {
        p[0] >= -0.5
            && p[0] < self.last[0] + 0.5
            && p[1] >= -0.5
            && p[1] < self.last[1] + 0.5
            && p[2] >= -0.5
            && p[2] < self.last[2] + 0.5
    }
}

/// The exact interval of `t` over which `s0 + dx * t` lies within `bounds(axis, s, d)` along
/// every axis (unbounded where no axis moves), or `None` when an axis that does not move lies
/// outside its bounds (`open`: whether the upper bound itself is outside).
fn crossing(
    s0: [f32; 3],
    dx: [f32; 3],
    open: bool,
    bounds: impl Fn(usize, f64, f64) -> (f64, f64),
) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
    for a in 0..3 {
        let (s, d) = (f64::from(s0[a]), f64::from(dx[a]));
        let (min, max) = bounds(a, s, d);
        if d == 0.0 {
            let below_max = if open { s < max } else { s <= max };
            if !(s >= min && below_max) {
                return None;
            }
            continue;
        }
        let (t0, t1) = ((min - s) / d, (max - s) / d);
        lo = lo.max(t0.min(t1));
        hi = hi.min(t0.max(t1));
    }
    Some((lo, hi))
}

/// A way to read a value at a voxel coordinate.
pub(crate) trait Sampler: Copy + Send + Sync {
    /// The value at `p`, or `None` outside the sampling domain.
    fn sample(&self, p: [f32; 3]) -> Option<f32>;

    /// The grid sampled.
    fn grid(&self) -> &Grid<'_>;
}

/// Nearest-voxel sampling (exact stored values).
#[derive(Clone, Copy)]
pub(crate) struct NearestSampler<'a>(pub Grid<'a>);

/// Trilinear sampling (the outer half voxel takes the edge value).
#[derive(Clone, Copy)]
pub(crate) struct TrilinearSampler<'a>(pub Grid<'a>);

impl Sampler for NearestSampler<'_> {
    fn grid(&self) -> &Grid<'_> {
        &self.0
    }

    #[inline(always)]
    fn sample(&self, p: [f32; 3]) -> Option<f32> {
        let g = &self.0;
        if !g.inside(p) {
            return None;
        }
        // Inside, p + 0.5 >= 0: truncation is floor. Through i32: a float to usize cast
        // costs several instructions more.
        let i = (((p[0] + 0.5) as i32) as usize).min(g.n[0] - 1);
        let j = (((p[1] + 0.5) as i32) as usize).min(g.n[1] - 1);
        let k = (((p[2] + 0.5) as i32) as usize).min(g.n[2] - 1);
        Some(f32::from(g.voxels[i + j * g.sx + k * g.sxy]))
    }
}

impl Sampler for TrilinearSampler<'_> {
    fn grid(&self) -> &Grid<'_> {
        &self.0
    }

    #[inline(always)]
    fn sample(&self, p: [f32; 3]) -> Option<f32> {
        let g = &self.0;
        if !g.inside(p) {
            return None;
        }
        // Clamp into [0, last]: the outer half voxel takes the edge value.
        let cx = p[0].clamp(0.0, g.last[0]);
        let cy = p[1].clamp(0.0, g.last[1]);
        let cz = p[2].clamp(0.0, g.last[2]);
        let (i0, j0, k0) = (
            (cx as i32) as usize,
            (cy as i32) as usize,
            (cz as i32) as usize,
        );
        let (fx, fy, fz) = (cx - i0 as f32, cy - j0 as f32, cz - k0 as f32);
        let di = usize::from(i0 + 1 < g.n[0]);
        let dj = if j0 + 1 < g.n[1] { g.sx } else { 0 };
        let dk = if k0 + 1 < g.n[2] { g.sxy } else { 0 };
        let base = i0 + j0 * g.sx + k0 * g.sxy;
        let v = g.voxels;
        let at = |o: usize| f32::from(v[o]);
        let c00 = at(base) + (at(base + di) - at(base)) * fx;
        let c10 = at(base + dj) + (at(base + dj + di) - at(base + dj)) * fx;
        let c01 = at(base + dk) + (at(base + dk + di) - at(base + dk)) * fx;
        let c11 = at(base + dk + dj) + (at(base + dk + dj + di) - at(base + dk + dj)) * fx;
        let c0 = c00 + (c10 - c00) * fy;
        let c1 = c01 + (c11 - c01) * fy;
        Some(c0 + (c1 - c0) * fz)
    }
}
