//! Shared by render's reference tests: runs the pydicom reference scripts in
//! `tests/reference/` (installed by scripts/test) and loads what they write.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use render::{Geometry, Rescale, V3, Volume};

/// ../shared/testdata, from the repository root.
pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata")
        .join(rel)
}

fn python() -> String {
    std::env::var("APPLIANCE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `tests/reference/SCRIPT args...`; panics with its stderr when it fails.
pub fn reference(script: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("run python3 (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{script} {args:?} failed (scripts/test installs pydicom and numpy):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Little-endian i16 values from a file.
pub fn read_i16(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).expect("read reference output");
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// A series read by pydicom: the volume (with the geometry from its tags) and the metadata.
pub struct Series {
    pub volume: Volume,
    pub meta: serde_json::Value,
}

fn load(rel: &str) -> Series {
    let dir = tempfile_dir();
    let src = testdata(rel);
    reference(
        "series.py",
        &[
            src.to_str().expect("utf-8 path"),
            dir.to_str().expect("utf-8 path"),
        ],
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).expect("meta"))
            .expect("json");
    let v3 = |v: &serde_json::Value| V3::new(f(&v[0]), f(&v[1]), f(&v[2]));
    let dims: Vec<usize> = meta["dims"]
        .as_array()
        .expect("dims")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    let axes = [
        v3(&meta["axes"][0]),
        v3(&meta["axes"][1]),
        v3(&meta["axes"][2]),
    ];
    let geometry =
        Geometry::new([dims[0], dims[1], dims[2]], v3(&meta["origin"]), axes).expect("geometry");
    let rescale = Rescale {
        slope: f(&meta["slope"]),
        intercept: f(&meta["intercept"]),
    };
    let volume = Volume::new(geometry, read_i16(&dir.join("voxels.i16")), rescale).expect("volume");
    let _ = std::fs::remove_dir_all(&dir);
    Series { volume, meta }
}

pub fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().expect("number")
}

/// A fresh directory under the system temp dir.
pub fn tempfile_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "render-ref-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The Philips 140-slice CT head phantom (512x512x140, 0.451 mm pixels, 1 mm slices), read once.
pub fn ct140() -> &'static Series {
    static S: OnceLock<Series> = OnceLock::new();
    S.get_or_init(|| load("series/ct-philips-headphantom-140"))
}

/// The Siemens T1 sagittal MR, head first supine (256x256x35, 4.8 mm slices).
pub fn mr_hfs() -> &'static Series {
    static S: OnceLock<Series> = OnceLock::new();
    S.get_or_init(|| load("series/mr-siemens-head-t1-sag/HFS"))
}
