//! Fixtures render's unit tests share: random volumes, a reproducible number stream, linear
//! grey tables and the scalar row every kernel is compared with.

use crate::math::V3;
use crate::sampler::Sampler;
use crate::volume::{Geometry, Rescale, Volume};
use crate::window::{GreyPipeline, GreyTable, Voi, Window};

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
pub(crate) fn uniform(seed: u64) -> impl FnMut() -> f32 {
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

pub(crate) fn scalar_row<S: Sampler>(
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
