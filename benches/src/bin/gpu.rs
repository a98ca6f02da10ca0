//! Bench: the GPU backend beside the CPU path, from the same run, on a synthetic head phantom
//! of the 140-slice CT's size (512x512x140) and a 1000-slice one (512x512x1000): single frames
//! (render + read-back), batches, a 20 mm MIP slab, the upload of a volume, and frames per
//! second rendered on the GPU and JPEG-encoded (jpeg-encoder, q85) on every CPU core for many
//! concurrent views. Also prints the adapter and this machine's memcpy bandwidth.
//!
//! `cargo build --release -p benches --bin gpu && $CARGO_TARGET_DIR/release/gpu [SECONDS]`.
//! Synthetic data keeps the bench self-contained (it runs on a lent GPU machine with nothing
//! else installed); the correctness tests use the real series.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use render::encode::encode_jpeg;
use render::gpu::GpuRenderer;
use render::mpr::{MprRequest, Sampling, Slab, SlabMode, render};
use render::{
    Geometry, GreyPipeline, GreyTable, Orientation, Plane, Preset, Rescale, V3, Viewport, Voi,
    Volume,
};

fn phantom(nz: usize) -> Volume {
    let (nx, ny) = (512usize, 512usize);
    let g = Geometry::axis_aligned(
        [nx, ny, nz],
        V3::new(-115.5, -115.5, 0.0),
        [0.451, 0.451, 1.0],
    )
    .expect("geometry");
    let mut voxels = vec![0i16; nx * ny * nz];
    voxels
        .par_chunks_mut(nx * ny)
        .enumerate()
        .for_each(|(k, slice)| {
            let z = (k as f32 / nz as f32) * 2.0 - 1.0;
            for j in 0..ny {
                let y = j as f32 / ny as f32 * 2.0 - 1.0;
                for i in 0..nx {
                    let x = i as f32 / nx as f32 * 2.0 - 1.0;
                    let r = (x * x / 0.64 + y * y / 0.81 + z * z / 0.9).sqrt();
                    let hu = if r > 1.0 {
                        -1000.0
                    } else if r > 0.92 {
                        1200.0 // skull
                    } else {
                        let ventricle =
                            ((x * 6.0).sin() * (y * 5.0).cos() * (z * 4.0).sin()) * 12.0;
                        35.0 + ventricle
                            + if (x - 0.2).abs() < 0.05 && y.abs() < 0.3 {
                                25.0
                            } else {
                                0.0
                            }
                    };
                    slice[j * nx + i] = (hu + 1024.0) as i16;
                }
            }
        });
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

fn views(g: &Geometry) -> Vec<(&'static str, Viewport)> {
    let c = g.center();
    let fit = |p: Plane| Viewport::fit(p, g, 512, 512).expect("fit");
    let oblique = Plane::standard(Orientation::Axial, c)
        .rotated(V3::new(1.0, 0.0, 0.0), 30.0)
        .and_then(|p| p.rotated(V3::new(0.0, 0.0, 1.0), 20.0))
        .expect("oblique");
    vec![
        ("axial", fit(Plane::standard(Orientation::Axial, c))),
        ("coronal", fit(Plane::standard(Orientation::Coronal, c))),
        ("sagittal", fit(Plane::standard(Orientation::Sagittal, c))),
        ("oblique", fit(oblique)),
    ]
}

fn req(vp: &Viewport, slab: Option<Slab>) -> MprRequest<'_> {
    MprRequest {
        viewport: vp,
        sampling: Sampling::Trilinear,
        slab,
        background: 0,
    }
}

fn median<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    f(); // warm-up
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

const USAGE: &str = "
usage: gpu [SECONDS]

The GPU backend beside the CPU path on synthetic phantoms (512x512x140 and 512x512x1000):
single frames, batches, a 20 mm MIP slab, volume upload, and frames/s rendered on the GPU
and encoded on every core. SECONDS: how long each throughput figure runs (default 3).
Needs a GPU (or lavapipe with WGPU_BACKEND=vulkan).
";

fn main() {
    let args = benches::Args::parse(USAGE, 1);
    let seconds: f64 = args.get(0, "SECONDS", 3.0);
    if !(seconds.is_finite() && seconds > 0.0) {
        args.fail("SECONDS must be above 0");
    }
    let bandwidth = benches::memcpy_bandwidth();
    let gpu = match GpuRenderer::new(48 << 30) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no GPU backend: {e}");
            std::process::exit(1);
        }
    };
    let cores = rayon::current_num_threads();
    println!("adapter: {:?}", gpu.adapter());
    println!(
        "CPU threads: {cores}; memcpy bandwidth: {:.2} GB/s",
        bandwidth / 1e9
    );
    let table: GreyTable = GreyPipeline {
        voi: Voi::Window(Preset::Brain.window()),
        ..GreyPipeline::default_ct()
    }
    .table()
    .expect("table");
    let one_core = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");

    for nz in [140usize, 1000] {
        let t = Instant::now();
        let volume = phantom(nz);
        let built = t.elapsed();
        let g = volume.geometry().clone();
        let vs = views(&g);
        let t = Instant::now();
        gpu.render(&volume, &table, &req(&vs[0].1, None))
            .expect("first GPU frame");
        let upload = t.elapsed();
        println!(
            "\n== 512x512x{nz} ({:.0} MB int16; built in {}) ==\nfirst GPU frame incl. upload: {}",
            volume.byte_size() as f64 / 1e6,
            ms(built),
            ms(upload)
        );
        println!(
            "{:>9} | {:>13} | {:>13} | {:>13} | {:>13}",
            "view", "CPU 1 core", "CPU all", "GPU 1 frame", "GPU in 64s"
        );
        for (name, vp) in &vs {
            let r = req(vp, None);
            let cpu1 = median(9, || {
                drop(one_core.install(|| render(&volume, &table, &r).expect("cpu")))
            });
            let cpun = median(9, || drop(render(&volume, &table, &r).expect("cpu")));
            let gpu1 = median(21, || drop(gpu.render(&volume, &table, &r).expect("gpu")));
            let batch: Vec<MprRequest<'_>> = (0..64).map(|_| r).collect();
            let gpu64 = median(9, || {
                drop(gpu.render_batch(&volume, &table, &batch).expect("gpu"))
            }) / 64;
            println!(
                "{name:>9} | {:>13} | {:>13} | {:>13} | {:>13}",
                ms(cpu1),
                ms(cpun),
                ms(gpu1),
                ms(gpu64)
            );
        }
        let mip = req(
            &vs[1].1,
            Some(Slab {
                thickness: 20.0,
                mode: SlabMode::Mip,
            }),
        );
        let omip = req(
            &vs[3].1,
            Some(Slab {
                thickness: 20.0,
                mode: SlabMode::Mip,
            }),
        );
        println!(
            "20 mm MIP coronal: CPU all {}, GPU {}; oblique: CPU all {}, GPU {}",
            ms(median(5, || drop(
                render(&volume, &table, &mip).expect("cpu")
            ))),
            ms(median(21, || drop(
                gpu.render(&volume, &table, &mip).expect("gpu")
            ))),
            ms(median(5, || drop(
                render(&volume, &table, &omip).expect("cpu")
            ))),
            ms(median(21, || drop(
                gpu.render(&volume, &table, &omip).expect("gpu")
            ))),
        );

        // Many concurrent views: batches of 64 distinct planes rendered on the GPU while the
        // previous batch is JPEG-encoded on every core.
        let planes: Vec<Viewport> = (0..64)
            .map(|n| {
                let (_, base) = vs[n % 4];
                Viewport {
                    plane: base.plane.translated((n as f64 - 32.0) * 0.7),
                    ..base
                }
            })
            .collect();
        let batch: Vec<MprRequest<'_>> = planes.iter().map(|vp| req(vp, None)).collect();
        let start = Instant::now();
        let (mut frames_done, mut bytes) = (0usize, 0usize);
        let mut pending = gpu.render_batch(&volume, &table, &batch).expect("gpu");
        while start.elapsed().as_secs_f64() < seconds {
            let (next, encoded) = rayon::join(
                || gpu.render_batch(&volume, &table, &batch).expect("gpu"),
                || {
                    pending
                        .par_iter()
                        .map(|f| encode_jpeg(f, 85).expect("jpeg").len())
                        .collect::<Vec<_>>()
                },
            );
            frames_done += encoded.len();
            bytes += encoded.iter().sum::<usize>();
            pending = next;
        }
        let rate = frames_done as f64 / start.elapsed().as_secs_f64();
        println!(
            "concurrent: {rate:.0} frames/s rendered on the GPU and encoded (jpeg-encoder q85, {cores} threads), {:.1} KB/frame",
            bytes as f64 / frames_done.max(1) as f64 / 1e3
        );
        let t = Instant::now();
        let mut cpu_frames = 0usize;
        while t.elapsed().as_secs_f64() < seconds / 2.0 {
            cpu_frames += planes
                .par_iter()
                .map(|vp| {
                    encode_jpeg(&render(&volume, &table, &req(vp, None)).expect("cpu"), 85)
                        .expect("jpeg")
                        .len()
                })
                .count();
        }
        println!(
            "reference, CPU only: {:.0} frames/s rendered and encoded on {cores} threads",
            cpu_frames as f64 / t.elapsed().as_secs_f64()
        );
    }
    println!(
        "\nresident on the GPU: {} volumes, {:.0} MB",
        gpu.resident_volumes(),
        gpu.resident_bytes() as f64 / 1e6
    );
}
