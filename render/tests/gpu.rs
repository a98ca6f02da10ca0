//! The GPU backend (wgpu; Mesa's lavapipe on machines without a GPU): every view type on the
//! 140-slice CT equals the CPU output within one grey level; volumes stay resident within the
//! budget and are evicted least-recently-used; a volume over the budget falls back to the CPU;
//! a lost device is recovered from; `auto`, `on` and `off` pick the backend as documented.

#![cfg(feature = "gpu")]

mod common;

use std::sync::OnceLock;

use common::ct140;
use render::gpu::GpuRenderer;
use render::mpr::{MprRequest, Sampling, Slab, SlabMode, render};
use render::{
    Backend, Frame, GpuMode, GreyPipeline, Orientation, Plane, Renderer, Rescale, V3, Viewport,
    Voi, Volume,
};

fn gpu() -> &'static GpuRenderer {
    static G: OnceLock<GpuRenderer> = OnceLock::new();
    G.get_or_init(|| {
        let g = GpuRenderer::new(2 << 30)
            .expect("a GPU adapter (scripts/test installs mesa-vulkan-drivers for lavapipe)");
        println!("GPU adapter: {:?}", g.adapter());
        g
    })
}

fn table() -> render::GreyTable {
    // A wide window: most of the phantom maps to distinct greys.
    GreyPipeline {
        voi: Voi::Window(render::Window::linear(300.0, 2000.0)),
        ..GreyPipeline::default_ct()
    }
    .table()
    .expect("table")
}

/// (pixels differing at all, pixels differing by more than one grey level)
fn differences(a: &Frame, b: &Frame) -> (usize, usize) {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let pairs = || a.bytes().iter().zip(b.bytes());
    (
        pairs().filter(|(x, y)| x != y).count(),
        pairs().filter(|(x, y)| x.abs_diff(**y) > 1).count(),
    )
}

#[test]
fn every_view_matches_the_cpu() {
    let s = ct140();
    let (v, t) = (&s.volume, table());
    let g = v.geometry();
    let c = g.center();
    let fit = |p: Plane| Viewport::fit(p, g, 512, 512).expect("fit");
    let oblique = Plane::standard(Orientation::Axial, c)
        .rotated(V3::new(1.0, 0.3, 0.0), 35.0)
        .expect("oblique");
    let mut views = vec![
        ("axial", fit(Plane::standard(Orientation::Axial, c))),
        ("coronal", fit(Plane::standard(Orientation::Coronal, c))),
        ("sagittal", fit(Plane::standard(Orientation::Sagittal, c))),
        ("oblique", fit(oblique)),
    ];
    let mut transformed = fit(Plane::standard(Orientation::Coronal, c));
    transformed.zoom = 2.3;
    transformed.pan = [14.0, -9.0];
    transformed.rotation = 90.0;
    transformed.flip_h = true;
    transformed.width = 390;
    transformed.height = 844;
    views.push((
        "coronal, zoomed, panned, turned, flipped, phone-sized",
        transformed,
    ));
    let slabs = [
        None,
        Some(Slab {
            thickness: 20.0,
            mode: SlabMode::Mip,
        }),
        Some(Slab {
            thickness: 10.0,
            mode: SlabMode::MinIp,
        }),
        Some(Slab {
            thickness: 10.0,
            mode: SlabMode::Average,
        }),
    ];
    for sampling in [Sampling::Nearest, Sampling::Trilinear] {
        for slab in slabs {
            let reqs: Vec<MprRequest<'_>> = views
                .iter()
                .map(|(_, vp)| MprRequest {
                    viewport: vp,
                    sampling,
                    slab,
                    background: 0,
                })
                .collect();
            let frames = gpu().render_batch(v, &t, &reqs).expect("GPU render");
            for ((name, _), (req, gpu_frame)) in views.iter().zip(reqs.iter().zip(&frames)) {
                let cpu = render(v, &t, req).expect("CPU render");
                let (any, big) = differences(&cpu, gpu_frame);
                let n = cpu.bytes().len();
                assert!(
                    cpu.bytes().iter().filter(|p| **p > 0).count() > n / 20,
                    "{name}: the view shows the phantom"
                );
                assert!(
                    big == 0,
                    "{name} {sampling:?} {slab:?}: {big} pixels differ by more than 1 ({any} differ at all)"
                );
            }
        }
    }
}

fn cube(n: usize, seed: i16) -> Volume {
    let g = render::Geometry::axis_aligned([n, n, n], V3::default(), [1.0, 1.0, 1.0])
        .expect("geometry");
    let voxels: Vec<i16> = (0..n * n * n)
        .map(|i| ((i % 251) as i16).wrapping_mul(seed))
        .collect();
    Volume::new(
        g,
        voxels,
        Rescale {
            slope: 1.0,
            intercept: -1024.0,
        },
    )
    .expect("volume")
}

#[test]
fn budget_eviction_and_cpu_fallback() {
    let one = 64 * 64 * 64 * 2;
    let gpu = GpuRenderer::new(2 * one as u64).expect("GPU");
    let t = table();
    let (a, b, c) = (cube(64, 3), cube(64, 5), cube(64, 7));
    let vp = Viewport::fit(
        Plane::standard(Orientation::Axial, a.geometry().center()),
        a.geometry(),
        64,
        64,
    )
    .expect("fit");
    let req = MprRequest {
        viewport: &vp,
        sampling: Sampling::Nearest,
        slab: None,
        background: 0,
    };
    for v in [&a, &b, &a, &c] {
        assert_eq!(
            gpu.render(v, &t, &req).expect("render"),
            render(v, &t, &req).expect("cpu")
        );
    }
    // a was used after b, so c evicted b: a and c are resident.
    assert_eq!(
        (gpu.resident_volumes(), gpu.resident_bytes()),
        (2, 2 * one as u64)
    );
    let big = cube(90, 3);
    assert!(matches!(
        gpu.render(&big, &t, &req),
        Err(render::RenderError::DoesNotFit { .. })
    ));
    // A dropped volume leaves the GPU too.
    drop(c);
    let _ = gpu.render(&a, &t, &req).expect("render");
    assert_eq!(gpu.resident_volumes(), 1);

    let renderer = Renderer::new(GpuMode::On, 2 * one as u64).expect("renderer");
    let big_vp = Viewport::fit(
        Plane::standard(Orientation::Axial, big.geometry().center()),
        big.geometry(),
        64,
        64,
    )
    .expect("fit");
    let big_req = MprRequest {
        viewport: &big_vp,
        ..req
    };
    let (frame, backend) = renderer.render(&big, &t, &big_req).expect("fallback");
    assert_eq!(
        backend,
        Backend::Cpu,
        "over the budget: rendered on the CPU"
    );
    assert_eq!(frame, render(&big, &t, &big_req).expect("cpu"));
    assert_eq!(renderer.render(&a, &t, &req).expect("gpu").1, Backend::Gpu);
}

#[test]
fn a_lost_device_is_recovered() {
    let gpu = GpuRenderer::new(64 << 20).expect("GPU");
    let t = table();
    let v = cube(48, 11);
    let vp = Viewport::fit(
        Plane::standard(Orientation::Sagittal, v.geometry().center()),
        v.geometry(),
        48,
        48,
    )
    .expect("fit");
    let req = MprRequest {
        viewport: &vp,
        sampling: Sampling::Trilinear,
        slab: None,
        background: 0,
    };
    let before = gpu.render(&v, &t, &req).expect("render");
    gpu.lose_device_for_test();
    let after = gpu.render(&v, &t, &req).expect("recovered on a new device");
    assert_eq!(before, after);
}

#[test]
fn modes_pick_the_backend() {
    assert_eq!(
        Renderer::new(GpuMode::Off, 1 << 30).expect("off").backend(),
        Backend::Cpu
    );
    assert_eq!(
        Renderer::new(GpuMode::On, 1 << 30).expect("on").backend(),
        Backend::Gpu
    );
    let auto = Renderer::new(GpuMode::Auto, 1 << 30).expect("auto");
    let software = gpu().adapter().software;
    assert_eq!(
        auto.backend(),
        if software { Backend::Cpu } else { Backend::Gpu },
        "auto uses only a real GPU"
    );
}
