//! The fast path for views whose canvas x, canvas y and normal each follow one voxel axis
//! (axial, coronal and sagittal views of an axis-aligned series at any zoom, pan, flip or
//! quarter-turn): sample positions split into a per-column, a per-row and a per-slab-step
//! part, computed once per frame, so a pixel costs a few table-driven loads and no
//! per-pixel coordinate arithmetic.

use rayon::prelude::*;

use crate::lines::{ColumnOffsets, LineTaps, interpolate, lerp_lines};
use crate::math::V3;
use crate::simd::Avx2;
use crate::slab::{Combine, SlabMode, VoxelView};
use crate::volume::Volume;
use crate::window::GreyTable;

/// A view whose canvas x, canvas y and normal each move along one voxel axis: voxel offsets
/// split into a per-column, a per-row and a per-slab-step part.
pub(crate) struct Separable {
    /// Read the volume's j-fastest copy (canvas columns along j).
    j_first: bool,
    cols: Vec<Option<usize>>,
    rows: Vec<Option<usize>>,
    steps: Vec<usize>,
    /// For one-plane views whose columns inside the volume form one run `[x0, x1)`: their
    /// offsets, and AVX2 to read them eight at a time.
    fast: Option<(Avx2, usize, ColumnOffsets)>,
}

impl Separable {
    pub(crate) fn new(volume: &Volume, view: &VoxelView, w: usize, h: usize) -> Option<Self> {
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
        let j_first = ax == 1;
        let strides = layout(dims, j_first);
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
                j_first,
                cols,
                rows: vec![None; h],
                steps: vec![0],
                fast: None,
            });
        }
        let fast = if steps.len() == 1 {
            Self::runs(&cols, volume.voxels().len())
        } else {
            None
        };
        Some(Self {
            j_first,
            cols,
            rows,
            steps,
            fast,
        })
    }

    /// The SIMD path's offsets when the columns inside the volume form one run.
    fn runs(cols: &[Option<usize>], voxels: usize) -> Option<(Avx2, usize, ColumnOffsets)> {
        let simd = Avx2::detect().filter(|_| voxels.is_multiple_of(2))?;
        let x0 = cols.iter().position(Option::is_some)?;
        let x1 = cols.iter().rposition(Option::is_some)? + 1;
        let run = cols[x0..x1]
            .iter()
            .copied()
            .collect::<Option<Vec<usize>>>()?;
        Some((simd, x0, ColumnOffsets::new(run.into_iter())?))
    }

    pub(crate) fn render(
        &self,
        volume: &Volume,
        table: &GreyTable,
        mode: SlabMode,
        background: u8,
        out: &mut [u8],
        w: usize,
    ) {
        let voxels = voxels_for(volume, self.j_first);
        out.par_chunks_mut(w)
            .zip(self.rows.par_iter())
            .for_each(|(row, r)| {
                let Some(r) = *r else {
                    row.fill(background);
                    return;
                };
                if self.steps.len() == 1 {
                    let base = r + self.steps[0];
                    if let Some((simd, x0, offsets)) = &self.fast {
                        // Columns outside the run keep the background the frame was filled with.
                        let out = &mut row[*x0..*x0 + offsets.len()];
                        simd.nearest_line(voxels, base, offsets, table, out);
                        return;
                    }
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

/// Positions along one voxel axis for a run of canvas columns, rows or slab steps: the two
/// neighbouring voxel offsets (already multiplied by the axis stride) and the weight of the
/// second; `None` outside the volume.
type Taps = Vec<Option<(usize, usize, f32)>>;

fn taps(start: f64, step: f64, count: usize, n: usize, stride: usize) -> Taps {
    let last = n as f64 - 1.0;
    (0..count)
        .map(|m| {
            let pos = start + step * m as f64;
            if !(pos >= -0.5 && pos < last + 0.5) {
                return None;
            }
            let c = pos.clamp(0.0, last);
            let i0 = c.floor();
            let f = (c - i0) as f32;
            let i0 = i0 as usize;
            let i1 = (i0 + 1).min(n - 1);
            Some((i0 * stride, i1 * stride, f))
        })
        .collect()
}

/// The separable path with trilinear interpolation. Per canvas row and slab step it first
/// interpolates, across rows and slices, the whole run of voxels the row needs into a line
/// (a contiguous, vectorisable loop when the canvas runs along voxel rows), then each canvas
/// pixel is one interpolation between two neighbours of that line.
pub(crate) struct SeparableLinear {
    /// Read the volume's j-fastest copy (canvas columns along j).
    j_first: bool,
    /// The range of column-axis indices any column reads.
    span: (usize, usize),
    /// The canvas columns inside the volume, `[x0, x1)`.
    valid: (usize, usize),
    /// For those columns: the two line positions (relative to `span.0`) and the weight.
    cols: LineTaps,
    /// AVX2 for the last step of a one-plane row, where the CPU has it.
    simd: Option<Avx2>,
    col_stride: usize,
    /// The row axis's stride.
    row_stride: usize,
    rows: Taps,
    steps: Vec<(usize, usize, f32)>,
}

impl SeparableLinear {
    pub(crate) fn new(volume: &Volume, view: &VoxelView, w: usize, h: usize) -> Option<Self> {
        let (ax, ay, an) = axes(view)?;
        let dims = volume.geometry().dims();
        let j_first = ax == 1;
        let strides = layout(dims, j_first);
        let comp = |v: V3, a: usize| v.to_array()[a];
        let cols = taps(comp(view.v0, ax), comp(view.dx, ax), w, dims[ax], 1);
        let lo = cols.iter().flatten().map(|c| c.0).min();
        let hi = cols.iter().flatten().map(|c| c.1).max();
        let mut rows = taps(
            comp(view.v0, ay),
            comp(view.dy, ay),
            h,
            dims[ay],
            strides[ay],
        );
        let steps: Vec<(usize, usize, f32)> = view
            .offsets
            .iter()
            .filter_map(|t| {
                taps(
                    comp(view.v0, an) + comp(view.dn, an) * t,
                    0.0,
                    1,
                    dims[an],
                    strides[an],
                )[0]
            })
            .collect();
        let span = match (lo, hi) {
            (Some(lo), Some(hi)) if !steps.is_empty() => (lo, hi),
            _ => {
                rows.fill(None);
                (0, 0)
            }
        };
        let inside: Vec<usize> = (0..w).filter(|x| cols[*x].is_some()).collect();
        let valid = match (inside.first(), inside.last()) {
            (Some(a), Some(b)) => (*a, *b + 1),
            _ => (0, 0),
        };
        let run = &cols[valid.0..valid.1];
        if run.iter().any(Option::is_none) {
            return None; // not one run: leave it to the general path
        }
        let cols = LineTaps::new(
            run.iter()
                .flatten()
                .map(|c| ((c.0 - span.0) as u32, (c.1 - span.0) as u32, c.2)),
        );
        Some(Self {
            j_first,
            span,
            valid,
            cols,
            simd: Avx2::detect(),
            col_stride: strides[ax],
            row_stride: strides[ay],
            rows,
            steps,
        })
    }

    pub(crate) fn render(
        &self,
        volume: &Volume,
        table: &GreyTable,
        mode: SlabMode,
        background: u8,
        out: &mut [u8],
        w: usize,
    ) {
        let voxels = voxels_for(volume, self.j_first);
        let (lo, hi) = self.span;
        let len = hi + 1 - lo;
        let stride = self.col_stride;
        if stride != 1 {
            return self.render_strided(voxels, table, mode, background, out, w);
        }
        // Canvas columns outside [x0, x1) keep the background the frame was filled with.
        let (x0, x1) = self.valid;
        let single = self.steps.len() == 1;
        // Each rayon task keeps its line and slab accumulator from row to row.
        let scratch = || {
            (
                vec![0f32; len],
                vec![0f32; if single { 0 } else { x1 - x0 }],
            )
        };
        out.par_chunks_mut(w)
            .zip(self.rows.par_iter())
            .for_each_init(scratch, |(line, acc), (row, r)| {
                let Some((r0, r1, fy)) = *r else {
                    row.fill(background);
                    return;
                };
                for (n, &(s0, s1, fz)) in self.steps.iter().enumerate() {
                    let base = lo * stride;
                    // Contiguous voxels: plain slices, which the compiler vectorises.
                    let run = |o: usize| &voxels[base + o..base + o + len];
                    let (a, b, c, d) = (run(r0 + s0), run(r1 + s0), run(r0 + s1), run(r1 + s1));
                    match self.simd {
                        Some(simd) => simd.interpolate(line, a, b, c, d, fy, fz),
                        None => interpolate(line, a, b, c, d, fy, fz),
                    }
                    self.take_line(line, n, mode, table, row, acc);
                }
                if !single {
                    self.finish_slab(acc, mode, table, row);
                }
            });
    }

    /// Slab step `n`'s interpolated line: with one step, straight to grey in the row's columns
    /// inside the volume; with more, combined into `acc`.
    fn take_line(
        &self,
        line: &[f32],
        n: usize,
        mode: SlabMode,
        table: &GreyTable,
        row: &mut [u8],
        acc: &mut [f32],
    ) {
        let (x0, x1) = self.valid;
        let taps = self.cols.iter();
        let sample = |(c0, c1, fx): (usize, usize, f32)| {
            let (p, q) = (line[c0], line[c1]);
            p + (q - p) * fx
        };
        if self.steps.len() == 1 {
            if let Some(simd) = self.simd {
                simd.lerp_line(line, &self.cols, table, &mut row[x0..x1]);
                return;
            }
            for (px, tap) in row[x0..x1].iter_mut().zip(taps) {
                *px = table.get_f32(sample(tap));
            }
            return;
        }
        if let Some(simd) = self.simd {
            let how = match (n, mode) {
                (0, _) => Combine::First,
                (_, SlabMode::Mip) => Combine::Max,
                (_, SlabMode::MinIp) => Combine::Min,
                (_, SlabMode::Average) => Combine::Add,
            };
            simd.lerp_combine(line, &self.cols, how, acc);
            return;
        }
        let acc_taps = acc.iter_mut().zip(taps);
        match (n, mode) {
            (0, _) => acc_taps.for_each(|(a, t)| *a = sample(t)),
            (_, SlabMode::Mip) => acc_taps.for_each(|(a, t)| *a = a.max(sample(t))),
            (_, SlabMode::MinIp) => acc_taps.for_each(|(a, t)| *a = a.min(sample(t))),
            (_, SlabMode::Average) => acc_taps.for_each(|(a, t)| *a += sample(t)),
        }
    }

    /// A slab's combined values to grey.
    fn finish_slab(&self, acc: &[f32], mode: SlabMode, table: &GreyTable, row: &mut [u8]) {
        let (x0, x1) = self.valid;
        let scale = if mode == SlabMode::Average {
            1.0 / self.steps.len() as f32
        } else {
            1.0
        };
        for (px, a) in row[x0..x1].iter_mut().zip(acc) {
            *px = table.get_f32(a * scale);
        }
    }
}

impl SeparableLinear {
    /// Canvas columns that step through memory (sagittal views, canvas x along voxel rows of
    /// other rows). A canvas row interpolates two lines of the plane of the row and column
    /// axes: each such line is first interpolated along the normal (one strided read per
    /// voxel, the only one) into a contiguous f32 line. Canvas rows come in order within a
    /// rayon task, so each task keeps the last two plane lines of each slab step and computes
    /// a line only when a row first needs it: no frame-sized buffer, and a line is used while
    /// it is still in the nearest cache.
    fn render_strided(
        &self,
        voxels: &[i16],
        table: &GreyTable,
        mode: SlabMode,
        background: u8,
        out: &mut [u8],
        w: usize,
    ) {
        let (lo, hi) = self.span;
        let len = hi + 1 - lo;
        let stride = self.col_stride;
        let row_stride = self.row_stride;
        let (x0, x1) = self.valid;
        let steps = self.steps.len();
        // Plane line `k` of slab step `n`: voxels along the column axis from `lo`, each
        // interpolated along the normal.
        let plane_line = |n: usize, k: usize, line: &mut [f32]| {
            let (s0, s1, fz) = self.steps[n];
            let base = lo * stride + k * row_stride;
            for (j, v) in line.iter_mut().enumerate() {
                let at = base + j * stride;
                let (p, q) = (f32::from(voxels[at + s0]), f32::from(voxels[at + s1]));
                *v = p + (q - p) * fz;
            }
        };
        let scratch = || Strided {
            cache: (0..steps).map(|_| LinePair::new(len)).collect(),
            line: vec![0f32; len],
            acc: vec![0f32; if steps > 1 { x1 - x0 } else { 0 }],
        };
        out.par_chunks_mut(w)
            .zip(self.rows.par_iter())
            .for_each_init(scratch, |st, (row, r)| {
                let Some((r0, r1, fy)) = *r else {
                    row.fill(background);
                    return;
                };
                let (k0, k1) = (r0 / row_stride, r1 / row_stride);
                for n in 0..steps {
                    let (a, b) = st.cache[n].get(k0, k1, |k, l| plane_line(n, k, l));
                    let line = &mut st.line;
                    match self.simd {
                        Some(simd) => simd.lerp_lines(line, a, b, fy),
                        None => lerp_lines(line, a, b, fy),
                    }
                    self.take_line(line, n, mode, table, row, &mut st.acc);
                }
                if steps > 1 {
                    self.finish_slab(&st.acc, mode, table, row);
                }
            });
    }
}

/// A rayon task's scratch for the strided path.
struct Strided {
    /// Per slab step, the last two plane lines computed.
    cache: Vec<LinePair>,
    line: Vec<f32>,
    acc: Vec<f32>,
}

/// The last two plane lines computed for one slab step, with their line numbers.
struct LinePair {
    keys: [Option<usize>; 2],
    lines: [Vec<f32>; 2],
}

impl LinePair {
    fn new(len: usize) -> Self {
        Self {
            keys: [None, None],
            lines: [vec![0f32; len], vec![0f32; len]],
        }
    }

    /// Lines `k0` and `k1` (possibly equal), computing by `fill` those not kept.
    fn get(
        &mut self,
        k0: usize,
        k1: usize,
        mut fill: impl FnMut(usize, &mut [f32]),
    ) -> (&[f32], &[f32]) {
        for k in [k0, k1] {
            if self.keys.contains(&Some(k)) {
                continue;
            }
            // Replace a slot holding neither wanted line.
            let slot = usize::from(self.keys[0] == Some(k0) || self.keys[0] == Some(k1));
            fill(k, &mut self.lines[slot]);
            self.keys[slot] = Some(k);
        }
        let at = |k| usize::from(self.keys[0] != Some(k));
        (&self.lines[at(k0)], &self.lines[at(k1)])
    }
}

/// Strides of the i, j and k axes in the stored order, or in the j-fastest copy.
fn layout(dims: [usize; 3], j_first: bool) -> [usize; 3] {
    let [nx, ny, _] = dims;
    if j_first {
        [ny, 1, nx * ny]
    } else {
        [1, nx, nx * ny]
    }
}

/// The voxels in the order `layout` gave strides for.
fn voxels_for(volume: &Volume, j_first: bool) -> &[i16] {
    if j_first {
        volume.j_fastest()
    } else {
        volume.voxels()
    }
}

/// The voxel axes followed by canvas x, canvas y and the normal, when each follows one.
fn axes(view: &VoxelView) -> Option<(usize, usize, usize)> {
    let ax = single_axis(view.dx)?;
    let ay = single_axis(view.dy)?;
    let an = if view.offsets.len() > 1 {
        single_axis(view.dn)?
    } else {
        3 - ax - ay
    };
    (ax != ay && ax != an && ay != an).then_some((ax, ay, an))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever order rows ask for lines in (rising, falling, repeated, equal pairs,
    /// jumps), the pair returns the lines asked for, and computes a line again only when
    /// neither slot holds it.
    #[test]
    fn line_pairs_return_the_lines_asked_for() {
        let fill = |k: usize, line: &mut [f32]| line.iter_mut().for_each(|v| *v = k as f32);
        let mut pair = LinePair::new(3);
        let mut computed = 0;
        let asks = [
            (0, 1),
            (0, 1),
            (1, 2),
            (2, 2),
            (2, 3),
            (7, 6),
            (6, 5),
            (5, 5),
            (9, 0),
            (0, 9),
        ];
        for (k0, k1) in asks {
            let before = pair.keys;
            let (a, b) = pair.get(k0, k1, |k, l| {
                computed += 1;
                fill(k, l)
            });
            assert_eq!((a[0], b[2]), (k0 as f32, k1 as f32), "asked ({k0}, {k1})");
            if before.contains(&Some(k0)) && before.contains(&Some(k1)) {
                assert_eq!(pair.keys, before, "nothing to compute for ({k0}, {k1})");
            }
        }
        // Lines 0, 1, 2, 3, 7, 6, 5, 9 once each, and 0 again after 6 and 5 displaced it.
        assert_eq!(computed, 9);
    }
}
