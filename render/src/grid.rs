//! The general MPR path, for views whose canvas axes or normal do not follow the voxel axes
//! (oblique planes and slabs): per pixel, f32 voxel coordinates sampled by a `Sampler`, rows
//! in parallel (rayon), a row's columns handed to the sampler's SIMD kernel where the CPU has
//! one (`SimdSampler`), slab steps combined as `slab::combine` does.

use rayon::prelude::*;

use crate::math::V3;
use crate::sampler::{NearestSampler, Sampler, TrilinearSampler};
use crate::simd::Avx2;
use crate::slab::{SlabMode, VoxelView, combine};
use crate::window::GreyTable;

/// A sampler with its SIMD kernels: the same values as [`Sampler::sample`], many columns at
/// a time.
pub(crate) trait SimdSampler: Sampler {
    /// Renders one-plane row pixels `x0..x0 + row.len()` (pixel x samples `s0 + dx * x`)
    /// with this sampler's AVX2 kernel. `next` is where the row rendered after this one
    /// starts: only a hint, for reading its voxels ahead (any value is safe).
    #[allow(clippy::too_many_arguments)]
    fn simd_row(
        &self,
        simd: Avx2,
        s0: [f32; 3],
        dx: [f32; 3],
        next: [f32; 3],
        table: &GreyTable,
        background: u8,
        x0: usize,
        row: &mut [u8],
    );

    /// The values (before the grey table) of slab step `step` at columns `x0..x0 + out.len()`
    /// of a row (pixel x samples `(s0 + dx * x) + step`), all in the grid's interior, by a
    /// SIMD kernel: `false` where this sampler has none on this CPU.
    fn simd_values(
        &self,
        _simd: Avx2,
        _s0: [f32; 3],
        _dx: [f32; 3],
        _step: [f32; 3],
        _x0: usize,
        _out: &mut [f32],
    ) -> bool {
        false
    }
}

impl SimdSampler for NearestSampler<'_> {
    #[allow(clippy::too_many_arguments)]
    fn simd_row(
        &self,
        simd: Avx2,
        s0: [f32; 3],
        dx: [f32; 3],
        _next: [f32; 3],
        table: &GreyTable,
        background: u8,
        x0: usize,
        row: &mut [u8],
    ) {
        simd.nearest_row(&self.0, s0, dx, table, background, x0, row);
    }
}

impl SimdSampler for TrilinearSampler<'_> {
    #[allow(clippy::too_many_arguments)]
    fn simd_row(
        &self,
        simd: Avx2,
        s0: [f32; 3],
        dx: [f32; 3],
        next: [f32; 3],
        table: &GreyTable,
        background: u8,
        x0: usize,
        row: &mut [u8],
    ) {
        simd.trilinear_row(&self.0, s0, dx, next, table, background, x0, row);
    }

    fn simd_values(
        &self,
        simd: Avx2,
        s0: [f32; 3],
        dx: [f32; 3],
        step: [f32; 3],
        x0: usize,
        out: &mut [f32],
    ) -> bool {
        simd.trilinear_values(&self.0, s0, dx, step, x0, out)
    }
}

/// Renders `view` through `sampler` into the frame `out` (rows of `w` pixels, filled with
/// the background): the path for every view the separable paths do not take.
#[allow(clippy::too_many_arguments)]
pub(crate) fn general<S: SimdSampler>(
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
    let at = |start: [f32; 3], s: &[f32; 3]| [start[0] + s[0], start[1] + s[1], start[2] + s[2]];
    let scratch = || (Vec::<f32>::new(), Vec::<f32>::new());
    out.par_chunks_mut(w)
        .enumerate()
        .for_each_init(scratch, |(acc, values), (y, row)| {
            let start = f(view.v0 + view.dy * y as f64);
            if steps.len() == 1 {
                let s0 = at(start, &steps[0]);
                // Columns outside the span keep the background the frame was filled with.
                let (a, b) = sampler.grid().span(s0, dx, w);
                if let Some(simd) = simd {
                    // Where the next row starts, for the kernel to read its voxels ahead.
                    let next = at(f(view.v0 + view.dy * (y + 1) as f64), &steps[0]);
                    sampler.simd_row(simd, s0, dx, next, table, background, a, &mut row[a..b]);
                    return;
                }
                for (x, px) in row.iter_mut().enumerate().take(b).skip(a) {
                    let xf = x as f32;
                    let p = [s0[0] + dx[0] * xf, s0[1] + dx[1] * xf, s0[2] + dx[2] * xf];
                    *px = sampler.sample(p).map_or(background, |v| table.get_f32(v));
                }
                return;
            }
            // A slab: pixel x of step s samples (start + dx * x) + s. Where every step of a
            // column lies in the grid's interior, every sample exists: a SIMD kernel gives
            // each step's values for the whole run of such columns, combined step by step as
            // `combine` does. (The interior is found for start + s; its margin covers the
            // rounding between the two sums.)
            let mut done = 0..0;
            if let Some(simd) = simd {
                let (mut a, mut b) = (0, w);
                for s in &steps {
                    let (ia, ib) = sampler.grid().interior(at(start, s), dx, w);
                    (a, b) = (a.max(ia), b.min(ib));
                }
                if a < b && slab_values(&sampler, simd, mode, &steps, start, dx, a..b, acc, values)
                {
                    for (px, &v) in row[a..b].iter_mut().zip(acc.iter()) {
                        *px = table.get_f32(v);
                    }
                    done = a..b;
                }
            }
            for (x, px) in row.iter_mut().enumerate() {
                if done.contains(&x) {
                    continue;
                }
                let xf = x as f32;
                let p = [
                    start[0] + dx[0] * xf,
                    start[1] + dx[1] * xf,
                    start[2] + dx[2] * xf,
                ];
                let samples = steps.iter().map(|s| sampler.sample(at(p, s)));
                *px = combine(mode, samples).map_or(background, |v| table.get_f32(v));
            }
        });
}

/// The combined slab values of columns `cols` of a row starting at `start` into `acc`
/// (`values`: scratch), every step of every column in the grid's interior; what `combine`
/// gives from the same samples. `false` where the sampler has no SIMD values kernel here.
#[allow(clippy::too_many_arguments)]
fn slab_values<S: SimdSampler>(
    sampler: &S,
    simd: Avx2,
    mode: SlabMode,
    steps: &[[f32; 3]],
    start: [f32; 3],
    dx: [f32; 3],
    cols: std::ops::Range<usize>,
    acc: &mut Vec<f32>,
    values: &mut Vec<f32>,
) -> bool {
    let n = cols.len();
    acc.resize(n, 0.0);
    values.resize(n, 0.0);
    for (i, s) in steps.iter().enumerate() {
        let target = if i == 0 {
            &mut acc[..]
        } else {
            &mut values[..]
        };
        if !sampler.simd_values(simd, start, dx, *s, cols.start, target) {
            return false;
        }
        if i > 0 {
            for (a, &v) in acc.iter_mut().zip(values.iter()) {
                *a = match mode {
                    SlabMode::Mip => a.max(v),
                    SlabMode::MinIp => a.min(v),
                    SlabMode::Average => *a + v,
                };
            }
        }
    }
    if mode == SlabMode::Average {
        let count = steps.len() as f32;
        for a in acc.iter_mut() {
            *a /= count;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::Grid;
    use crate::testing::{linear_table, volume};
    use crate::window::Window;

    /// A sampler without the SIMD values kernel: slabs take the scalar path.
    #[derive(Clone, Copy)]
    struct ScalarOnly<S>(S);

    impl<S: Sampler> Sampler for ScalarOnly<S> {
        fn sample(&self, p: [f32; 3]) -> Option<f32> {
            self.0.sample(p)
        }

        fn grid(&self) -> &Grid<'_> {
            self.0.grid()
        }
    }

    impl<S: SimdSampler> SimdSampler for ScalarOnly<S> {
        fn simd_row(
            &self,
            simd: Avx2,
            s0: [f32; 3],
            dx: [f32; 3],
            next: [f32; 3],
            table: &GreyTable,
            background: u8,
            x0: usize,
            row: &mut [u8],
        ) {
            self.0
                .simd_row(simd, s0, dx, next, table, background, x0, row);
        }
    }

    /// Oblique slabs: where every step of a column lies inside, the SIMD values kernel gives
    /// the frame the scalar slab path gives, for each mode, a wide window and a narrow one.
    #[test]
    fn simd_slabs_equal_scalar_slabs() {
        let v = volume(11, [48, 40, 24]);
        let view = VoxelView {
            v0: V3::new(-4.3, -2.1, 1.7),
            dx: V3::new(0.83, 0.31, 0.07),
            dy: V3::new(-0.28, 0.77, 0.41),
            dn: V3::new(0.05, -0.4, 0.8),
            offsets: vec![-1.6, -0.8, 0.0, 0.8, 1.6],
        };
        let (w, h) = (72, 60);
        // Rows where some columns have every step inside: the SIMD path has work there.
        let grid = Grid::new(&v);
        let f = |p: V3| [p.x as f32, p.y as f32, p.z as f32];
        let busy = (0..h)
            .filter(|&y| {
                let start = f(view.v0 + view.dy * y as f64);
                let (mut a, mut b) = (0, w);
                for t in &view.offsets {
                    let s = f(view.dn * *t);
                    let s0 = [start[0] + s[0], start[1] + s[1], start[2] + s[2]];
                    let (ia, ib) = grid.interior(s0, f(view.dx), w);
                    (a, b) = (a.max(ia), b.min(ib));
                }
                a < b
            })
            .count();
        assert!(
            busy > 10,
            "only {busy} rows have columns inside at every step"
        );
        // On an AVX-512 CPU the values kernel runs (elsewhere both frames are scalar), and its
        // values are the sampler's.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            let simd = Avx2::new(&grid).expect("an AVX-512 CPU has AVX2");
            let sampler = TrilinearSampler(grid);
            let (s0, d, step) = (
                [2.25f32, 3.5, 4.75],
                [0.61f32, 0.27, 0.13],
                [0.3, -0.2, 0.7],
            );
            let mut out = [0f32; 21];
            assert!(sampler.simd_values(simd, s0, d, step, 3, &mut out));
            for (i, &got) in out.iter().enumerate() {
                let x = (3 + i) as f32;
                let p = [s0[0] + d[0] * x, s0[1] + d[1] * x, s0[2] + d[2] * x];
                let p = [p[0] + step[0], p[1] + step[1], p[2] + step[2]];
                assert_eq!(Some(got), sampler.sample(p), "column {}", 3 + i);
            }
        }
        for window in [Window::linear(30.0, 3000.0), Window::linear(40.0, 80.0)] {
            let table = linear_table(window);
            for mode in [SlabMode::Mip, SlabMode::MinIp, SlabMode::Average] {
                let mut simd = vec![7u8; w * h];
                let mut scalar = vec![7u8; w * h];
                general(
                    TrilinearSampler(Grid::new(&v)),
                    &table,
                    &view,
                    mode,
                    7,
                    &mut simd,
                    w,
                );
                let only = ScalarOnly(TrilinearSampler(Grid::new(&v)));
                general(only, &table, &view, mode, 7, &mut scalar, w);
                let differ = simd.iter().zip(&scalar).filter(|(a, b)| a != b).count();
                assert_eq!(differ, 0, "{mode:?} {window:?}: {differ} pixels differ");
                assert!(simd.iter().any(|&g| g != 7), "{mode:?}: nothing drawn");
            }
        }
    }
}
