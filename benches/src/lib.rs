//! benches: criterion benches (`benches/`) and end-to-end bench binaries (`src/bin/`). Each bench
//! prints its figure beside a reference measured in the same run (a peer such as Orthanc, or the
//! machine's limit such as memcpy bandwidth); medians go to docs/PERFORMANCE.md.
//!
//! This library holds what the benches share: loading a real series (read by pydicom, as the
//! render tests do) and measuring the machine's memory bandwidth.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use render::{Geometry, Rescale, V3, Volume};

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A series under ../shared/testdata/series read with pydicom (render/tests/reference/series.py)
/// into a volume. Panics with the script's error when Python or pydicom is missing.
pub fn load_series(rel: &str) -> Volume {
    let out = std::env::temp_dir().join(format!("bench-series-{}", std::process::id()));
    let src = repo_root().join("../shared/testdata/series").join(rel);
    let python = std::env::var("APPLIANCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let run = Command::new(python)
        .arg(repo_root().join("render/tests/reference/series.py"))
        .arg(&src)
        .arg(&out)
        .output()
        .expect("run python3 (scripts/test installs it with pydicom)");
    assert!(
        run.status.success(),
        "series.py failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).expect("meta"))
            .expect("json");
    let f = |v: &serde_json::Value| v.as_f64().expect("number");
    let v3 = |v: &serde_json::Value| V3::new(f(&v[0]), f(&v[1]), f(&v[2]));
    let d = |i: usize| meta["dims"][i].as_u64().expect("dim") as usize;
    let g = Geometry::new(
        [d(0), d(1), d(2)],
        v3(&meta["origin"]),
        [0, 1, 2].map(|i| v3(&meta["axes"][i])),
    )
    .expect("geometry");
    let bytes = std::fs::read(out.join("voxels.i16")).expect("voxels");
    let voxels: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let _ = std::fs::remove_dir_all(&out);
    Volume::new(
        g,
        voxels,
        Rescale {
            slope: f(&meta["slope"]),
            intercept: f(&meta["intercept"]),
        },
    )
    .expect("volume")
}

/// Memory bandwidth of this machine: the median of several 64 MiB copies, in bytes per second
/// (bytes copied, i.e. read once and written once).
pub fn memcpy_bandwidth() -> f64 {
    let n = 64 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let mut rates: Vec<f64> = (0..9)
        .map(|_| {
            let t = Instant::now();
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
            n as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// A grey frame through libjpeg-turbo's usual entry (`tjCompress2`, which runs libjpeg's colour
/// converter over grey input): the reference beside render's grey-plane entry, which gives the
/// same bytes.
pub fn turbojpeg_usual(frame: &render::Frame, quality: u8) -> anyhow::Result<Vec<u8>> {
    let render::Pixels::Gray8(px) = &frame.pixels else {
        anyhow::bail!("the reference takes grey frames");
    };
    let mut c = turbojpeg::Compressor::new()?;
    c.set_quality(i32::from(quality));
    c.set_subsamp(turbojpeg::Subsamp::Gray);
    Ok(c.compress_to_vec(turbojpeg::Image {
        pixels: px.as_slice(),
        width: frame.width as usize,
        pitch: frame.width as usize,
        height: frame.height as usize,
        format: turbojpeg::PixelFormat::GRAY,
    })?)
}
