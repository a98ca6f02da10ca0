//! The separable path's per-line pieces, shared by its scalar loops and the SIMD kernels: the
//! taps of a canvas row into an interpolated line (`LineTaps`), the voxel offsets of a nearest
//! row (`ColumnOffsets`), and the interpolation of voxel lines into f32 lines. Invariant: every
//! tap's position lies below `LineTaps::end` and every offset below `ColumnOffsets::end`, as
//! built, so the kernels may check a line's length once.

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

    /// Each column's offset.
    pub(crate) fn at(&self) -> &[i32] {
        &self.at
    }

    /// One past the largest offset.
    pub(crate) fn end(&self) -> usize {
        self.end
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

    /// The number of columns.
    pub(crate) fn len(&self) -> usize {
        self.fx.len()
    }

    /// Each column's first position, second position and weight, as three slices.
    pub(crate) fn parts(&self) -> (&[u32], &[u32], &[f32]) {
        (&self.c0, &self.c1, &self.fx)
    }

    /// One past the largest position.
    pub(crate) fn end(&self) -> usize {
        self.end
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

/// `line = lerp(a, b, f)`, element by element.
#[inline(always)]
pub(crate) fn lerp_lines(line: &mut [f32], a: &[f32], b: &[f32], f: f32) {
    for ((l, p), q) in line.iter_mut().zip(a).zip(b) {
        *l = p + (q - p) * f;
    }
}

/// `line = lerp(lerp(a, b, fy), lerp(c, d, fy), fz)`, element by element.
#[inline(always)]
pub(crate) fn interpolate(
    line: &mut [f32],
    a: &[i16],
    b: &[i16],
    c: &[i16],
    d: &[i16],
    fy: f32,
    fz: f32,
) {
    let n = line.len();
    let (a, b, c, d) = (&a[..n], &b[..n], &c[..n], &d[..n]);
    if fz == 0.0 {
        for i in 0..n {
            let (p, q) = (f32::from(a[i]), f32::from(b[i]));
            line[i] = p + (q - p) * fy;
        }
    } else {
        for i in 0..n {
            let (p, q, u, v) = (
                f32::from(a[i]),
                f32::from(b[i]),
                f32::from(c[i]),
                f32::from(d[i]),
            );
            let near = p + (q - p) * fy;
            line[i] = near + ((u + (v - u) * fy) - near) * fz;
        }
    }
}
