//! Properties over random inputs (proptest): voxel -> patient -> voxel round-trips for any
//! grid, sheared ones included; canvas -> patient -> canvas round-trips for any view; and a slab
//! MIP is at least every single plane sampled in the slab (a MinIP at most), on any plane.

use proptest::prelude::*;
use render::mpr::{MprRequest, Sampling, Slab, SlabMode, render, slab_offsets};
use render::{Geometry, GreyPipeline, Plane, Rescale, V3, Viewport, Voi, Volume, Window};

fn v3(range: std::ops::Range<f64>) -> impl Strategy<Value = V3> {
    (range.clone(), range.clone(), range).prop_map(|(x, y, z)| V3::new(x, y, z))
}

/// A random grid: a rotation of the axes, spacing 0.2-5 mm, and a shear of the slice axis.
fn geometry() -> impl Strategy<Value = Geometry> {
    (
        (2usize..40, 2usize..40, 1usize..30),
        v3(-300.0..300.0),
        v3(-1.0..1.0),
        0.0..std::f64::consts::PI,
        (0.2..5.0f64, 0.2..5.0f64, 0.2..5.0f64),
        (-0.5..0.5f64, -0.5..0.5f64),
    )
        .prop_filter_map(
            "degenerate rotation axis",
            |(dims, origin, axis, angle, (sx, sy, sz), (shx, shy))| {
                let axis = axis.normalized()?;
                let r = |v: V3| v.rotated(axis, angle);
                let a0 = r(V3::new(sx, 0.0, 0.0));
                let a1 = r(V3::new(0.0, sy, 0.0));
                let a2 = r(V3::new(shx * sz, shy * sz, sz));
                Geometry::new([dims.0, dims.1, dims.2], origin, [a0, a1, a2]).ok()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn voxel_patient_round_trip(g in geometry(), v in v3(-50.0..50.0)) {
        let back = g.patient_to_voxel(g.voxel_to_patient(v));
        prop_assert!((back - v).norm() < 1e-9 * (1.0 + v.norm()), "{v:?} -> {back:?}");
    }

    #[test]
    fn canvas_patient_round_trip(
        center in v3(-100.0..100.0), row in v3(-1.0..1.0), col in v3(-1.0..1.0),
        zoom in 0.1..20.0f64, pan in (-200.0..200.0f64, -200.0..200.0f64), rotation in -720.0..720.0f64,
        flips in (any::<bool>(), any::<bool>()), x in 0.0..640.0f64, y in 0.0..480.0f64,
    ) {
        let Ok(plane) = Plane::new(center, row, col) else { return Ok(()) };
        let vp = Viewport {
            zoom, pan: [pan.0, pan.1], rotation, flip_h: flips.0, flip_v: flips.1,
            ..Viewport::native(plane, 640, 480, [0.7, 0.7])
        };
        let back = vp.patient_to_canvas(vp.canvas_to_patient(x, y));
        prop_assert!((back.x - x).abs() < 1e-6 && (back.y - y).abs() < 1e-6 && back.depth.abs() < 1e-6);
    }

    #[test]
    fn mip_is_at_least_every_plane_of_its_slab(
        seed in any::<u64>(), normal in v3(-1.0..1.0), thickness in 0.5..12.0f64, shift in v3(-3.0..3.0),
        axis_aligned in any::<bool>(),
    ) {
        let g = Geometry::axis_aligned([14, 12, 10], V3::default(), [1.0, 1.2, 1.5]).unwrap();
        let mut state = seed | 1;
        let voxels: Vec<i16> = (0..14 * 12 * 10)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 3000) as i16 - 900
            })
            .collect();
        let volume = Volume::new(g.clone(), voxels, Rescale::default()).unwrap();
        let n = if axis_aligned { V3::new(0.0, 1.0, 0.0) } else { normal };
        let Some(n) = n.normalized() else { return Ok(()) };
        let helper = if n.x.abs() < 0.9 { V3::new(1.0, 0.0, 0.0) } else { V3::new(0.0, 0.0, 1.0) };
        let row = helper.cross(n);
        let col = n.cross(row);
        let plane = Plane::new(g.center() + shift, row, col).unwrap();
        let vp = Viewport::fit(plane, &g, 40, 30).unwrap();
        let table = GreyPipeline { rescale: Rescale::default(), voi: Voi::Window(Window::linear(500.0, 3001.0)), monochrome1: false, invert: false }
            .table()
            .unwrap();
        let draw = |viewport: &Viewport, slab: Option<Slab>| {
            // Trilinear: values are continuous in position, so the slab's samples and the
            // separately rendered planes (whose coordinates round a hair differently in f32)
            // agree within one grey level; nearest could pick the other voxel at a midpoint.
            render(&volume, &table, &MprRequest { viewport, sampling: Sampling::Trilinear, slab, background: 0 }).unwrap()
        };
        let mip = draw(&vp, Some(Slab { thickness, mode: SlabMode::Mip }));
        let minip = draw(&vp, Some(Slab { thickness, mode: SlabMode::MinIp }));
        let offsets = slab_offsets(&g, plane.normal(), Some(Slab { thickness, mode: SlabMode::Mip }));
        // Pixels whose samples all lie clearly inside the volume: at the very edge of the
        // sampling domain a sample can fall in or out depending on f32 rounding.
        let [nx, ny, nz] = g.dims().map(|n| n as f64);
        let clear: Vec<bool> = (0..vp.height)
            .flat_map(|y| (0..vp.width).map(move |x| (x, y)))
            .map(|(x, y)| {
                let p = vp.canvas_to_patient(f64::from(x) + 0.5, f64::from(y) + 0.5);
                offsets.iter().all(|t| {
                    let v = g.patient_to_voxel(p + plane.normal() * *t);
                    [(v.x, nx), (v.y, ny), (v.z, nz)].iter().all(|(c, n)| *c > -0.49 && *c < n - 0.51)
                })
            })
            .collect();
        for t in &offsets {
            let one = draw(&Viewport { plane: plane.translated(*t), ..vp }, None);
            // A canvas pixel the single plane sees inside the volume (grey 0 is only the
            // background here: the window maps every stored value, -900 and up, to >= 9).
            for (((m, lo), s), inside) in mip.bytes().iter().zip(minip.bytes()).zip(one.bytes()).zip(&clear) {
                if *s > 0 && *inside {
                    prop_assert!(m.saturating_add(1) >= *s, "MIP {m} < plane at {t} mm: {s}");
                    prop_assert!(*lo <= s.saturating_add(1) && *lo > 0, "MinIP {lo} > plane at {t} mm: {s}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// The separable fast paths (views along the voxel axes) agree with the general per-pixel
    /// path, reached by tilting the same view by a hundred-thousandth of a degree.
    #[test]
    fn fast_paths_agree_with_the_general_path(
        seed in any::<u64>(), orientation in 0usize..3, zoom in 0.3..4.0f64,
        pan in (-8.0..8.0f64, -8.0..8.0f64), flips in (any::<bool>(), any::<bool>()), quarter in 0usize..4,
        slab in prop::option::of(0.5..10.0f64), shift in -6.0..6.0f64,
    ) {
        let g = Geometry::axis_aligned([17, 13, 11], V3::new(-3.0, 2.0, 5.0), [0.8, 0.9, 1.7]).unwrap();
        let mut state = seed | 1;
        let voxels: Vec<i16> = (0..17 * 13 * 11)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 2000) as i16 - 900
            })
            .collect();
        let volume = Volume::new(g.clone(), voxels, Rescale::default()).unwrap();
        let o = [render::Orientation::Axial, render::Orientation::Coronal, render::Orientation::Sagittal][orientation];
        let plane = Plane::standard(o, g.center()).translated(shift);
        let vp = Viewport {
            zoom, pan: [pan.0, pan.1], rotation: 90.0 * quarter as f64, flip_h: flips.0, flip_v: flips.1,
            ..Viewport::fit(plane, &g, 37, 29).unwrap()
        };
        let tilted = Viewport { plane: plane.rotated(V3::new(0.3, 0.5, 0.8), 1e-5).unwrap(), ..vp };
        let table = GreyPipeline { rescale: Rescale::default(), voi: Voi::Window(Window::linear(100.0, 2001.0)), monochrome1: false, invert: false }
            .table()
            .unwrap();
        let slab = slab.map(|thickness| Slab { thickness, mode: SlabMode::Mip });
        for sampling in [Sampling::Nearest, Sampling::Trilinear] {
            let draw = |viewport: &Viewport| {
                render(&volume, &table, &MprRequest { viewport, sampling, slab, background: 0 }).unwrap()
            };
            let (fast, general) = (draw(&vp), draw(&tilted));
            let differ = fast.bytes().iter().zip(general.bytes()).filter(|(a, b)| a.abs_diff(**b) > 1).count();
            // Nearest: where samples sit within rounding of a voxel midpoint the two paths may
            // pick neighbouring voxels, and at a zoom that is a whole canvas column or row.
            let allowed = if sampling == Sampling::Nearest { (vp.width + vp.height) as usize } else { fast.bytes().len() / 100 };
            prop_assert!(differ <= allowed, "{sampling:?}: {differ} pixels differ by more than 1");
        }
    }
}

/// A sphere sampled onto an anisotropic, sheared grid (gantry tilt) still shows as a circle of
/// its true diameter on axial, coronal and sagittal views: aspect comes from the geometry.
#[test]
fn spheres_stay_round_on_sheared_anisotropic_grids() {
    let tilt = 20f64.to_radians();
    let (sx, sy, sz) = (0.5, 0.7, 2.0);
    let axes = [
        V3::new(sx, 0.0, 0.0),
        V3::new(0.0, sy, 0.0),
        V3::new(0.0, sz * tilt.sin(), sz * tilt.cos()),
    ];
    let dims = [160usize, 120, 60];
    let g = Geometry::new(dims, V3::new(-40.0, -60.0, -50.0), axes).unwrap();
    let (center, radius) = (g.center(), 20.0);
    let mut voxels = vec![0i16; dims[0] * dims[1] * dims[2]];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p = g.voxel_to_patient(V3::new(i as f64, j as f64, k as f64));
                if (p - center).norm() <= radius {
                    voxels[i + dims[0] * (j + dims[1] * k)] = 1000;
                }
            }
        }
    }
    let volume = Volume::new(g.clone(), voxels, Rescale::default()).unwrap();
    let table = GreyPipeline {
        rescale: Rescale::default(),
        voi: Voi::Window(Window::linear(500.0, 10.0)),
        monochrome1: false,
        invert: false,
    }
    .table()
    .unwrap();
    for o in [
        render::Orientation::Axial,
        render::Orientation::Coronal,
        render::Orientation::Sagittal,
    ] {
        let vp = Viewport::native(Plane::standard(o, center), 200, 200, [0.25, 0.25]);
        let f = render(
            &volume,
            &table,
            &MprRequest {
                viewport: &vp,
                sampling: Sampling::Trilinear,
                slab: None,
                background: 0,
            },
        )
        .unwrap();
        let lit: Vec<(u32, u32)> = (0..200)
            .flat_map(|y| (0..200).map(move |x| (x, y)))
            .filter(|(x, y)| f.gray_at(*x, *y) == Some(255))
            .collect();
        let span = |c: fn(&(u32, u32)) -> u32| {
            let (lo, hi) = (
                lit.iter().map(c).min().unwrap(),
                lit.iter().map(c).max().unwrap(),
            );
            f64::from(hi - lo + 1) * 0.25
        };
        let (w, h) = (span(|p| p.0), span(|p| p.1));
        // The coarsest voxel step (2 mm along the slices) limits how sharp the edge is.
        assert!(
            (w - 2.0 * radius).abs() <= 2.0 && (h - 2.0 * radius).abs() <= 2.0,
            "{o:?}: {w} x {h} mm, expected {} mm",
            2.0 * radius
        );
    }
}
