//! Cine: which frame to show at a moment (stepping through a stack's frames at a frame rate,
//! looping, bouncing or once), and stepping a plane through a volume along its normal one
//! sample spacing at a time. Time is passed in; nothing here reads a clock.

use std::time::Duration;

use crate::viewport::Plane;
use crate::volume::Geometry;

/// What happens at the last frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CineMode {
    /// Start again from the first.
    #[default]
    Loop,
    /// Play backwards to the first, then forwards again.
    Bounce,
    /// Stop on the last.
    Once,
}

/// A cine loop over `frames` frames at `fps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cine {
    /// Number of frames (>= 1).
    pub frames: usize,
    /// Frames per second (> 0).
    pub fps: f64,
    /// End behaviour.
    pub mode: CineMode,
}

impl Cine {
    /// The frame shown `elapsed` after play started on frame `start`.
    pub fn frame_at(&self, start: usize, elapsed: Duration) -> usize {
        let n = self.frames.max(1);
        if n == 1 || self.fps.is_nan() || self.fps <= 0.0 {
            return start.min(n - 1);
        }
        let ticks = (elapsed.as_secs_f64() * self.fps).floor() as usize;
        let pos = start.min(n - 1) + ticks;
        match self.mode {
            CineMode::Loop => pos % n,
            CineMode::Once => pos.min(n - 1),
            CineMode::Bounce => {
                let period = 2 * (n - 1);
                let p = pos % period;
                if p < n { p } else { period - p }
            }
        }
    }

    /// When frame number `tick` (counted from the start) is due.
    pub fn due(&self, tick: u64) -> Duration {
        if self.fps > 0.0 {
            Duration::from_secs_f64(tick as f64 / self.fps)
        } else {
            Duration::ZERO
        }
    }
}

/// The plane moved `steps` sample spacings along its normal through `geometry` (a spacing is
/// the finest voxel step along the normal: one slice for an axial plane of an axial series).
pub fn step_plane(plane: &Plane, geometry: &Geometry, steps: i64) -> Plane {
    plane.translated(geometry.step_along(plane.normal()) * steps as f64)
}

/// The range of steps (inclusive) that keep the plane's centre within the volume's extent
/// along the normal.
pub fn step_range(plane: &Plane, geometry: &Geometry) -> (i64, i64) {
    let step = geometry.step_along(plane.normal());
    let depths: Vec<f64> = geometry
        .corners()
        .iter()
        .map(|c| plane.distance(*c))
        .collect();
    let lo = depths.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = depths.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (
        ((lo / step) - 1e-9).ceil() as i64,
        ((hi / step) + 1e-9).floor() as i64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::V3;
    use crate::viewport::Orientation;

    #[test]
    fn frames_follow_the_clock() {
        let c = Cine {
            frames: 4,
            fps: 10.0,
            mode: CineMode::Loop,
        };
        let at = |ms| c.frame_at(0, Duration::from_millis(ms));
        assert_eq!([at(0), at(99), at(100), at(350), at(400)], [0, 0, 1, 3, 0]);
        let b = Cine {
            mode: CineMode::Bounce,
            ..c
        };
        let seq: Vec<usize> = (0..8)
            .map(|i| b.frame_at(0, Duration::from_millis(i * 100 + 1)))
            .collect();
        assert_eq!(seq, [0, 1, 2, 3, 2, 1, 0, 1]);
        let o = Cine {
            mode: CineMode::Once,
            ..c
        };
        assert_eq!(o.frame_at(2, Duration::from_secs(10)), 3);
        assert_eq!(c.due(15), Duration::from_millis(1500));
    }

    #[test]
    fn planes_step_one_slice() {
        let g = Geometry::axis_aligned([10, 10, 5], V3::default(), [0.5, 0.5, 2.0]).unwrap();
        let p = Plane::standard(Orientation::Axial, g.center());
        assert_eq!(step_plane(&p, &g, 1).center.z, g.center().z + 2.0);
        assert_eq!(step_range(&p, &g), (-2, 2));
    }
}
