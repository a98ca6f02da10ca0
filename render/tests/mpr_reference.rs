//! MPR on the 140-slice CT head phantom (read by pydicom): orthogonal planes equal direct
//! reformatting of the voxels (exact with nearest sampling), an oblique plane at 0° equals the
//! axial view, a plane rotated 90° gives the orthogonal view, and a 20 mm MIP slab equals the
//! maximum over the voxels it spans.

mod common;

use common::ct140;
use render::mpr::{MprRequest, Sampling, Slab, SlabMode, render, slab_offsets};
use render::{Frame, GreyPipeline, GreyTable, Orientation, Plane, V3, Viewport, Volume};

fn table() -> GreyTable {
    // A wide window so that most stored values map to distinct greys.
    GreyPipeline {
        voi: render::Voi::Window(render::Window::linear(300.0, 2000.0)),
        ..GreyPipeline::default_ct()
    }
    .table()
    .expect("table")
}

fn draw(v: &Volume, t: &GreyTable, vp: &Viewport, sampling: Sampling, slab: Option<Slab>) -> Frame {
    render(
        v,
        t,
        &MprRequest {
            viewport: vp,
            sampling,
            slab,
            background: 0,
        },
    )
    .expect("render")
}

fn voxel(v: &Volume, i: usize, j: usize, k: usize) -> i16 {
    v.get(i, j, k).expect("inside")
}

#[test]
fn orthogonal_planes_equal_direct_reformatting() {
    let s = ct140();
    let (v, t) = (&s.volume, table());
    let g = v.geometry();
    let [nx, ny, nz] = g.dims();
    assert_eq!([nx, ny, nz], [512, 512, 140]);
    let [sx, sy, sz] = g.spacing();

    for k in [0, 70, 139] {
        let c = g.voxel_to_patient(V3::new(
            (nx as f64 - 1.0) / 2.0,
            (ny as f64 - 1.0) / 2.0,
            k as f64,
        ));
        let vp = Viewport::native(
            Plane::standard(Orientation::Axial, c),
            nx as u32,
            ny as u32,
            [sx, sy],
        );
        for sampling in [Sampling::Nearest, Sampling::Trilinear] {
            let f = draw(v, &t, &vp, sampling, None);
            let expected: Vec<u8> = (0..ny)
                .flat_map(|y| (0..nx).map(move |x| (x, y)))
                .map(|(x, y)| t.get(voxel(v, x, y, k)))
                .collect();
            assert_eq!(f.bytes(), &expected[..], "axial slice {k}, {sampling:?}");
        }
    }
    // Coronal: canvas x = column i, canvas y runs from the head (last slice) down.
    for j in [100, 256, 400] {
        let c = g.voxel_to_patient(V3::new(
            (nx as f64 - 1.0) / 2.0,
            j as f64,
            (nz as f64 - 1.0) / 2.0,
        ));
        let vp = Viewport::native(
            Plane::standard(Orientation::Coronal, c),
            nx as u32,
            nz as u32,
            [sx, sz],
        );
        let f = draw(v, &t, &vp, Sampling::Nearest, None);
        let expected: Vec<u8> = (0..nz)
            .flat_map(|y| (0..nx).map(move |x| (x, y)))
            .map(|(x, y)| t.get(voxel(v, x, j, nz - 1 - y)))
            .collect();
        assert_eq!(f.bytes(), &expected[..], "coronal row {j}");
        assert_eq!(
            draw(v, &t, &vp, Sampling::Trilinear, None),
            f,
            "trilinear at voxel centres is exact"
        );
    }
    // Sagittal: canvas x = row j (posterior to the right), canvas y from the head down.
    for i in [128, 300] {
        let c = g.voxel_to_patient(V3::new(
            i as f64,
            (ny as f64 - 1.0) / 2.0,
            (nz as f64 - 1.0) / 2.0,
        ));
        let vp = Viewport::native(
            Plane::standard(Orientation::Sagittal, c),
            ny as u32,
            nz as u32,
            [sy, sz],
        );
        let f = draw(v, &t, &vp, Sampling::Nearest, None);
        let expected: Vec<u8> = (0..nz)
            .flat_map(|y| (0..ny).map(move |x| (x, y)))
            .map(|(x, y)| t.get(voxel(v, i, x, nz - 1 - y)))
            .collect();
        assert_eq!(f.bytes(), &expected[..], "sagittal column {i}");
    }
}

#[test]
fn oblique_at_zero_degrees_is_axial_and_ninety_is_coronal() {
    let s = ct140();
    let (v, t) = (&s.volume, table());
    let g = v.geometry();
    let axial = Plane::standard(Orientation::Axial, g.center());
    let vp_axial = Viewport::fit(axial, g, 512, 512).expect("fit");
    let tilted_zero = axial.rotated(V3::new(1.0, 1.0, 0.0), 0.0).expect("rotate");
    let vp_oblique = Viewport {
        plane: tilted_zero,
        ..vp_axial
    };
    for sampling in [Sampling::Nearest, Sampling::Trilinear] {
        assert_eq!(
            draw(v, &t, &vp_oblique, sampling, None),
            draw(v, &t, &vp_axial, sampling, None),
            "{sampling:?}"
        );
    }

    // The axial plane turned -90° about the patient's left-right axis is the coronal plane.
    let turned = axial
        .rotated(V3::new(1.0, 0.0, 0.0), -90.0)
        .expect("rotate");
    let coronal = Plane::standard(Orientation::Coronal, g.center());
    assert!((turned.col - coronal.col).norm() < 1e-12 && (turned.row - coronal.row).norm() < 1e-12);
    let vp_cor = Viewport::fit(coronal, g, 512, 512).expect("fit");
    let a = draw(
        v,
        &t,
        &Viewport {
            plane: turned,
            ..vp_cor
        },
        Sampling::Trilinear,
        None,
    );
    let b = draw(v, &t, &vp_cor, Sampling::Trilinear, None);
    let worst = a
        .bytes()
        .iter()
        .zip(b.bytes())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    assert!(worst <= 1, "rotated axial vs coronal differ by {worst}");
    assert!(
        b.bytes().iter().filter(|p| **p > 0).count() > 10_000,
        "the coronal view shows the phantom"
    );
}

#[test]
fn coronal_mip_slab_is_the_max_over_its_voxels() {
    let s = ct140();
    let (v, t) = (&s.volume, table());
    let g = v.geometry();
    let [nx, _, nz] = g.dims();
    let [sx, sy, sz] = g.spacing();
    // 44 samples centred on a half-voxel position fall exactly on voxel rows.
    let j0 = 255.5;
    let c = g.voxel_to_patient(V3::new(
        (nx as f64 - 1.0) / 2.0,
        j0,
        (nz as f64 - 1.0) / 2.0,
    ));
    let plane = Plane::standard(Orientation::Coronal, c);
    let vp = Viewport::native(plane, nx as u32, nz as u32, [sx, sz]);
    let slab = Slab {
        thickness: 20.0,
        mode: SlabMode::Mip,
    };
    let offsets = slab_offsets(g, plane.normal(), Some(slab));
    assert_eq!(
        offsets.len(),
        (20.0 / sy).round() as usize,
        "one sample per voxel step across 20 mm"
    );
    // The coronal normal is +y (row x col = x x -z), so offset t is voxel row j0 + t/sy.
    let rows: Vec<usize> = offsets
        .iter()
        .map(|t| (j0 + t / sy).round() as usize)
        .collect();
    let f = draw(v, &t, &vp, Sampling::Nearest, Some(slab));
    for y in (0..nz).step_by(7) {
        for x in (0..nx).step_by(5) {
            let max = rows
                .iter()
                .map(|j| voxel(v, x, *j, nz - 1 - y))
                .max()
                .expect("rows");
            assert_eq!(
                f.gray_at(x as u32, y as u32),
                Some(t.get(max)),
                "pixel {x},{y}"
            );
        }
    }
    let min = draw(
        v,
        &t,
        &vp,
        Sampling::Nearest,
        Some(Slab {
            mode: SlabMode::MinIp,
            ..slab
        }),
    );
    let avg = draw(
        v,
        &t,
        &vp,
        Sampling::Nearest,
        Some(Slab {
            mode: SlabMode::Average,
            ..slab
        }),
    );
    for ((mx, mn), av) in f.bytes().iter().zip(min.bytes()).zip(avg.bytes()) {
        assert!(mn <= av && av <= mx);
    }
    // The general (oblique-capable) path agrees with the separable one.
    let tri = draw(v, &t, &vp, Sampling::Trilinear, Some(slab));
    let worst = tri
        .bytes()
        .iter()
        .zip(f.bytes())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    assert!(
        worst <= 1,
        "trilinear slab at voxel centres differs by {worst}"
    );
}
