//! Render benchmarks on the 140-slice CT (512x512x140), output 512x512, printed beside this
//! machine's memcpy bandwidth measured in the same run: MPR per orientation (render alone, and
//! render + JPEG q85 with jpeg-encoder and with libjpeg-turbo) on one core; a 20 mm coronal MIP
//! slab on two cores; frames per second with many frames rendering at once on two cores; and
//! the encoders' bytes and time per frame at q50/q75/q90 and PNG (libjpeg-turbo from the grey
//! plane, as render calls it, and through its usual entry `tjCompress2`). Run with
//! `cargo bench -p benches --bench render`; the summary at the end lists the medians.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;
use render::encode::{encode_jpeg, encode_jpeg_turbo, encode_png};
use render::mpr::{MprRequest, Sampling, Slab, SlabMode, render};
use render::{
    Frame, GreyPipeline, GreyTable, Orientation, Plane, Preset, V3, Viewport, Voi, Volume,
};

struct Views {
    volume: Volume,
    table: GreyTable,
    views: Vec<(&'static str, Viewport)>,
}

fn setup() -> Views {
    let volume = benches::load_series("ct-philips-headphantom-140");
    let table = GreyPipeline {
        voi: Voi::Window(Preset::Brain.window()),
        ..GreyPipeline::default_ct()
    }
    .table()
    .expect("table");
    let g = volume.geometry().clone();
    let c = g.center();
    let fit = |p: Plane| Viewport::fit(p, &g, 512, 512).expect("fit");
    let oblique = Plane::standard(Orientation::Axial, c)
        .rotated(V3::new(1.0, 0.0, 0.0), 30.0)
        .and_then(|p| p.rotated(V3::new(0.0, 0.0, 1.0), 20.0))
        .expect("oblique");
    let views = vec![
        ("axial", fit(Plane::standard(Orientation::Axial, c))),
        ("coronal", fit(Plane::standard(Orientation::Coronal, c))),
        ("sagittal", fit(Plane::standard(Orientation::Sagittal, c))),
        ("oblique", fit(oblique)),
    ];
    Views {
        volume,
        table,
        views,
    }
}

fn frame(v: &Views, vp: &Viewport, sampling: Sampling, slab: Option<Slab>) -> Frame {
    render(
        &v.volume,
        &v.table,
        &MprRequest {
            viewport: vp,
            sampling,
            slab,
            background: 0,
        },
    )
    .expect("render")
}

fn main() {
    let v = setup();
    let bandwidth = benches::memcpy_bandwidth();
    let one_core = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let mut g = c.benchmark_group("mpr_one_core");
    for (name, vp) in &v.views {
        for sampling in [Sampling::Nearest, Sampling::Trilinear] {
            let s = if sampling == Sampling::Nearest {
                "nearest"
            } else {
                "trilinear"
            };
            g.bench_function(BenchmarkId::new(format!("{name}/{s}"), "render"), |b| {
                one_core.install(|| b.iter(|| frame(&v, vp, sampling, None)))
            });
        }
        g.bench_function(
            BenchmarkId::new(format!("{name}/trilinear"), "render+jpeg-encoder q85"),
            |b| {
                one_core.install(|| {
                    b.iter(|| {
                        encode_jpeg(&frame(&v, vp, Sampling::Trilinear, None), 85).expect("jpeg")
                    })
                })
            },
        );
        g.bench_function(
            BenchmarkId::new(format!("{name}/trilinear"), "render+turbojpeg q85"),
            |b| {
                one_core.install(|| {
                    b.iter(|| {
                        encode_jpeg_turbo(&frame(&v, vp, Sampling::Trilinear, None), 85)
                            .expect("jpeg")
                    })
                })
            },
        );
    }
    g.finish();

    let mut g = c.benchmark_group("mip_two_cores");
    let coronal = v.views[1].1;
    for sampling in [Sampling::Nearest, Sampling::Trilinear] {
        let s = if sampling == Sampling::Nearest {
            "nearest"
        } else {
            "trilinear"
        };
        g.bench_function(BenchmarkId::new("coronal 20mm MIP", s), |b| {
            b.iter(|| {
                frame(
                    &v,
                    &coronal,
                    sampling,
                    Some(Slab {
                        thickness: 20.0,
                        mode: SlabMode::Mip,
                    }),
                )
            })
        });
    }
    let oblique = v.views[3].1;
    g.bench_function(BenchmarkId::new("oblique 20mm MIP", "trilinear"), |b| {
        b.iter(|| {
            frame(
                &v,
                &oblique,
                Sampling::Trilinear,
                Some(Slab {
                    thickness: 20.0,
                    mode: SlabMode::Mip,
                }),
            )
        })
    });
    g.finish();

    // Many frames at once: 64 different axial and coronal planes, each rendered on one thread
    // and encoded (turbojpeg q85), spread over the two cores.
    let planes: Vec<Viewport> = (0..64)
        .map(|n| {
            let (_, base) = v.views[n % 2];
            Viewport {
                plane: base.plane.translated((n as f64 - 32.0) * 0.9),
                ..base
            }
        })
        .collect();
    let mut g = c.benchmark_group("concurrent_two_cores");
    g.throughput(Throughput::Elements(planes.len() as u64));
    for sampling in [Sampling::Trilinear, Sampling::Nearest] {
        let s = if sampling == Sampling::Nearest {
            "nearest"
        } else {
            "trilinear"
        };
        g.bench_function(format!("64 frames {s} render+turbojpeg q85"), |b| {
            b.iter(|| {
                planes
                    .par_iter()
                    .map(|vp| {
                        let f = render(
                            &v.volume,
                            &v.table,
                            &MprRequest {
                                viewport: vp,
                                sampling,
                                slab: None,
                                background: 0,
                            },
                        )
                        .expect("render");
                        encode_jpeg_turbo(&f, 85).expect("jpeg").len()
                    })
                    .sum::<usize>()
            })
        });
    }
    g.finish();

    let axial = frame(&v, &v.views[0].1, Sampling::Trilinear, None);
    let mut g = c.benchmark_group("encode");
    for q in [50u8, 75, 90] {
        g.bench_function(BenchmarkId::new("jpeg-encoder", q), |b| {
            b.iter(|| encode_jpeg(&axial, q).expect("jpeg"))
        });
        g.bench_function(BenchmarkId::new("turbojpeg", q), |b| {
            b.iter(|| encode_jpeg_turbo(&axial, q).expect("jpeg"))
        });
        g.bench_function(BenchmarkId::new("turbojpeg tjCompress2", q), |b| {
            b.iter(|| benches::turbojpeg_usual(&axial, q).expect("jpeg"))
        });
    }
    g.bench_function("png", |b| b.iter(|| encode_png(&axial).expect("png")));
    g.finish();
    c.final_summary();

    summary(&v, bandwidth);
}

/// Medians from criterion's estimates, with the references measured in this run.
fn summary(v: &Views, bandwidth: f64) {
    let dir = benches::repo_root().join("target/criterion");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or(dir, |t| std::path::PathBuf::from(t).join("criterion"));
    let median = |id: &str| -> Option<f64> {
        let text = std::fs::read_to_string(dir.join(id).join("new/estimates.json")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["median"]["point_estimate"].as_f64().map(|ns| ns / 1e6)
    };
    let ms = |id: &str| median(id).map_or("n/a".to_owned(), |m| format!("{m:.3} ms"));
    // Bytes an axial frame must at least move: 512x512 i16 read and 512x512 u8 written.
    let floor = (512.0 * 512.0 * 3.0) / bandwidth * 1e3;
    println!("\n== render summary (medians) ==");
    println!(
        "memcpy bandwidth this run: {:.2} GB/s; moving one frame's bytes (768 KiB) at that rate: {floor:.3} ms",
        bandwidth / 1e9
    );
    for (name, _) in &v.views {
        println!(
            "{name:>9}: nearest {}, trilinear {}, +jpeg-encoder q85 {}, +turbojpeg q85 {}",
            ms(&format!("mpr_one_core/{name}_nearest/render")),
            ms(&format!("mpr_one_core/{name}_trilinear/render")),
            ms(&format!(
                "mpr_one_core/{name}_trilinear/render+jpeg-encoder q85"
            )),
            ms(&format!(
                "mpr_one_core/{name}_trilinear/render+turbojpeg q85"
            )),
        );
    }
    println!(
        "coronal 20 mm MIP (2 cores): nearest {}, trilinear {}; oblique 20 mm MIP trilinear {}",
        ms("mip_two_cores/coronal 20mm MIP/nearest"),
        ms("mip_two_cores/coronal 20mm MIP/trilinear"),
        ms("mip_two_cores/oblique 20mm MIP/trilinear")
    );
    for s in ["trilinear", "nearest"] {
        if let Some(m) = median(&format!(
            "concurrent_two_cores/64 frames {s} render+turbojpeg q85"
        )) {
            println!(
                "concurrent (2 cores): {:.0} frames/s, {s} render + turbojpeg q85",
                64.0 / (m / 1e3)
            );
        }
    }
    let axial = frame(v, &v.views[0].1, Sampling::Trilinear, None);
    for q in [50u8, 75, 90] {
        let (a, b) = (
            encode_jpeg(&axial, q).map(|j| j.len()),
            encode_jpeg_turbo(&axial, q).map(|j| j.len()),
        );
        println!(
            "JPEG q{q}: jpeg-encoder {} ({} bytes), turbojpeg {} ({} bytes; its usual entry \
             tjCompress2 {})",
            ms(&format!("encode/jpeg-encoder/{q}")),
            a.unwrap_or(0),
            ms(&format!("encode/turbojpeg/{q}")),
            b.unwrap_or(0),
            ms(&format!("encode/turbojpeg tjCompress2/{q}")),
        );
    }
    println!(
        "PNG: {} ({} bytes)",
        ms("encode/png"),
        encode_png(&axial).map(|p| p.len()).unwrap_or(0)
    );
}
