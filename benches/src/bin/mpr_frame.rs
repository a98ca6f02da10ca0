//! One frame on one core, render then JPEG, as a server streams it (issue 4's goal: render +
//! encode <= 1.0 ms p50): the 140-slice CT, output 512x512 fitted to the volume, brain window,
//! axial / coronal / sagittal / oblique, nearest and trilinear. Each iteration renders a frame
//! and encodes it at q85 as imaging does (libjpeg-turbo from the grey plane,
//! `encode_jpeg_preferred`), timing both parts, then encodes it once more through
//! libjpeg-turbo's usual entry (`tjCompress2`, the figure the issue quotes) as the reference.
//! So all the medians come from the same frames under the same load: on a shared VM whose speed
//! drifts from minute to minute, the reference encode is measured beside the render. The run
//! also prints this machine's memcpy bandwidth.
//!
//! `cargo build --release -p benches --bin mpr_frame && target/release/mpr_frame [FRAMES] [VIEW] [SAMPLING]`
//! (VIEW: one of axial, coronal, sagittal, oblique; SAMPLING: nearest or trilinear; all when
//! left out).

use std::time::Instant;

use anyhow::Result;
use render::encode::encode_jpeg_preferred;
use render::mpr::{MprRequest, Sampling, render};
use render::{GreyPipeline, Orientation, Plane, Preset, V3, Viewport, Voi};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const USAGE: &str = "
usage: mpr_frame [FRAMES] [VIEW] [SAMPLING]

One frame on one core, render then JPEG q85 as imaging streams it, on the 140-slice CT,
with libjpeg-turbo's usual entry timed on the same frames as the reference.
FRAMES: frames per view (default 500); VIEW: axial, coronal, sagittal or oblique;
SAMPLING: nearest or trilinear (all views and samplings when left out).
";

fn main() -> Result<()> {
    let args = benches::Args::parse(USAGE, 3);
    let frames: usize = args.get(0, "FRAMES", 500);
    if frames == 0 {
        args.fail("FRAMES must be at least 1");
    }
    let only = args.str(1).map(str::to_owned);
    if let Some(view) = &only
        && !["axial", "coronal", "sagittal", "oblique"].contains(&view.as_str())
    {
        args.fail(&format!(
            "VIEW must be axial, coronal, sagittal or oblique, not {view:?}"
        ));
    }
    let only_sampling = match args.str(2) {
        None => None,
        Some("nearest") => Some(Sampling::Nearest),
        Some("trilinear") => Some(Sampling::Trilinear),
        Some(other) => args.fail(&format!(
            "SAMPLING must be nearest or trilinear, not {other:?}"
        )),
    };
    let volume = benches::load_series("ct-philips-headphantom-140");
    let g = volume.geometry().clone();
    let table = GreyPipeline {
        voi: Voi::Window(Preset::Brain.window()),
        ..GreyPipeline::default_ct()
    }
    .table()?;
    let c = g.center();
    let one_core = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let oblique = Plane::standard(Orientation::Axial, c)
        .rotated(V3::new(1.0, 0.0, 0.0), 30.0)?
        .rotated(V3::new(0.0, 0.0, 1.0), 20.0)?;
    let views = [
        ("axial", Plane::standard(Orientation::Axial, c)),
        ("coronal", Plane::standard(Orientation::Coronal, c)),
        ("sagittal", Plane::standard(Orientation::Sagittal, c)),
        ("oblique", oblique),
    ];
    println!(
        "memcpy bandwidth this run: {:.2} GB/s; {frames} frames per line, one core",
        benches::memcpy_bandwidth() / 1e9
    );
    println!(
        "view      sampling   render p50  encode p50  render+encode p50  reference: tjCompress2 p50"
    );
    if let Some(v) = &only {
        anyhow::ensure!(
            views.iter().any(|(name, _)| name == v),
            "VIEW must be one of axial, coronal, sagittal, oblique, not {v:?}"
        );
    }
    for (name, plane) in views {
        if only.as_deref().is_some_and(|v| v != name) {
            continue;
        }
        let viewport = Viewport::fit(plane, &g, 512, 512)?;
        for sampling in [Sampling::Nearest, Sampling::Trilinear] {
            if only_sampling.is_some_and(|s| s != sampling) {
                continue;
            }
            let req = MprRequest {
                viewport: &viewport,
                sampling,
                slab: None,
                background: 0,
            };
            // One frame first: it builds what a view builds once (a sagittal view's copy).
            render(&volume, &table, &req)?;
            let (mut r, mut e, mut sum, mut reference) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            one_core.install(|| -> Result<()> {
                for _ in 0..frames {
                    let t0 = Instant::now();
                    let frame = render(&volume, &table, &req)?;
                    let t1 = Instant::now();
                    let jpeg = encode_jpeg_preferred(&frame, 85)?;
                    let t2 = Instant::now();
                    let usual = benches::turbojpeg_usual(&frame, 85)?;
                    let t3 = Instant::now();
                    anyhow::ensure!(jpeg == usual, "the two entries gave different JPEGs");
                    r.push((t1 - t0).as_secs_f64() * 1e3);
                    e.push((t2 - t1).as_secs_f64() * 1e3);
                    sum.push((t2 - t0).as_secs_f64() * 1e3);
                    reference.push((t3 - t2).as_secs_f64() * 1e3);
                }
                Ok(())
            })?;
            println!(
                "{name:9} {:9} {:8.3} ms  {:9.3} ms  {:14.3} ms  {:14.3} ms",
                format!("{sampling:?}").to_lowercase(),
                median(&mut r),
                median(&mut e),
                median(&mut sum),
                median(&mut reference)
            );
        }
    }
    Ok(())
}
