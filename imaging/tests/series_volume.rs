//! Series to volume against pydicom (render/tests/reference/series.py reads the same files and
//! computes the geometry from the tags): dimensions, origin, axes, rescale and every voxel for
//! the CT head phantom and the head-first supine and prone MR; the GE head CT with gantry tilt
//! and uneven spacing is resampled onto a regular sheared grid and says so; what is not a
//! volume is refused with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use imaging::dicom::series::{SeriesError, build_volume, read_slice, volume_from_dir};
use render::V3;

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata")
        .join(rel)
}

struct Reference {
    meta: serde_json::Value,
    voxels: Vec<i16>,
}

fn pydicom(rel: &str) -> Reference {
    let out = std::env::temp_dir().join(format!(
        "imaging-series-{}-{}",
        std::process::id(),
        rel.replace('/', "_")
    ));
    let python = std::env::var("APPLIANCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../render/tests/reference/series.py");
    let run = Command::new(python)
        .arg(script)
        .arg(testdata(rel))
        .arg(&out)
        .output()
        .expect("python3 (scripts/test installs it)");
    assert!(
        run.status.success(),
        "series.py: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let meta = serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).expect("meta"))
        .expect("json");
    let bytes = std::fs::read(out.join("voxels.i16")).expect("voxels");
    let _ = std::fs::remove_dir_all(&out);
    Reference {
        meta,
        voxels: bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect(),
    }
}

fn v3(v: &serde_json::Value) -> V3 {
    V3::new(
        v[0].as_f64().expect("x"),
        v[1].as_f64().expect("y"),
        v[2].as_f64().expect("z"),
    )
}

fn same_volume(rel: &str) {
    let built = volume_from_dir(&testdata(rel)).expect("a volume");
    let r = pydicom(rel);
    let g = built.volume.geometry();
    let dims: Vec<usize> = r.meta["dims"]
        .as_array()
        .expect("dims")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    assert_eq!(g.dims().to_vec(), dims, "{rel}");
    assert!(
        (g.origin() - v3(&r.meta["origin"])).norm() < 1e-4,
        "{rel}: origin {:?}",
        g.origin()
    );
    for (a, ours) in g.axes().iter().enumerate() {
        let theirs = v3(&r.meta["axes"][a]);
        assert!(
            (*ours - theirs).norm() < 1e-3,
            "{rel}: axis {a} {ours:?} vs {theirs:?}"
        );
    }
    assert!(built.resampled_from.is_none(), "{rel} is regular");
    assert!(built.tilt_degrees < 0.01, "{rel}: no tilt");
    // Stored values may be offset into i16; modality values must match exactly.
    let (rs, ri) = (
        r.meta["slope"].as_f64().expect("slope"),
        r.meta["intercept"].as_f64().expect("intercept"),
    );
    let ours = built.volume.rescale();
    let differ = built
        .volume
        .voxels()
        .iter()
        .zip(&r.voxels)
        .filter(|(a, b)| (ours.apply(f64::from(**a)) - (f64::from(**b) * rs + ri)).abs() > 1e-6)
        .count();
    assert_eq!(differ, 0, "{rel}: voxels differ from pydicom's");
}

#[test]
fn ct_phantom_and_mr_match_pydicom() {
    same_volume("series/ct-philips-headphantom-140");
    same_volume("series/mr-siemens-head-t1-sag/HFS");
    same_volume("series/mr-siemens-head-t1-sag/HFP");
}

#[test]
fn tilted_unevenly_spaced_ct_is_resampled() {
    let rel = "series/ct-ge-head-varspacing-28";
    let built = volume_from_dir(&testdata(rel)).expect("a volume");
    let r = pydicom(rel);
    let positions: Vec<V3> = r.meta["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .map(v3)
        .collect();
    let lengths: Vec<f64> = positions.windows(2).map(|w| (w[1] - w[0]).norm()).collect();
    let theirs = built.resampled_from.as_ref().expect("flagged as resampled");
    assert_eq!(theirs.len(), lengths.len());
    for (a, b) in theirs.iter().zip(&lengths) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    let (min, max) = lengths.iter().fold((f64::INFINITY, 0f64), |(lo, hi), l| {
        (lo.min(*l), hi.max(*l))
    });
    assert!(max / min > 3.0, "the spacing really varies: {min}..{max}");
    assert!(
        (built.tilt_degrees - 18.5).abs() < 0.5,
        "tilt {}",
        built.tilt_degrees
    );
    let g = built.volume.geometry();
    assert!((g.shear_degrees() - built.tilt_degrees).abs() < 1e-6);
    assert!(
        (g.axes()[2].norm() - min).abs() < 1e-6,
        "regular spacing = the finest"
    );
    let extent: f64 = lengths.iter().sum();
    let covered = (g.dims()[2] - 1) as f64 * min;
    assert!(
        covered <= extent + 1e-6 && extent - covered < min,
        "{covered} of {extent} mm"
    );
    assert!((g.origin() - positions[0]).norm() < 1e-4);
    // Resampled slice m at distance m*min along the line: linear between pydicom's slices.
    let plane = g.dims()[0] * g.dims()[1];
    let mut t = vec![0.0];
    for l in &lengths {
        t.push(t.last().unwrap() + l);
    }
    let (rs, ri) = (
        r.meta["slope"].as_f64().unwrap(),
        r.meta["intercept"].as_f64().unwrap(),
    );
    for m in [0usize, 3, g.dims()[2] / 2, g.dims()[2] - 1] {
        let tm = m as f64 * min;
        let seg = (0..lengths.len()).find(|s| t[s + 1] >= tm - 1e-9).unwrap();
        let w = (tm - t[seg]) / (t[seg + 1] - t[seg]);
        for px in (0..plane).step_by(997) {
            let a = f64::from(r.voxels[seg * plane + px]) * rs + ri;
            let b = f64::from(r.voxels[(seg + 1) * plane + px]) * rs + ri;
            let ours = built
                .volume
                .rescale()
                .apply(f64::from(built.volume.voxels()[m * plane + px]));
            assert!(
                (ours - (a + (b - a) * w)).abs() <= 0.5 + 1e-9,
                "slice {m} pixel {px}: {ours} vs {}",
                a + (b - a) * w
            );
        }
    }
}

#[test]
fn what_is_not_a_volume_says_why() {
    let ct = read_slice(&testdata(
        "dicom/pydicom-3.0.2-wheel-test_files/CT_small.dcm",
    ))
    .expect("CT");
    let mr = read_slice(&testdata(
        "dicom/pydicom-3.0.2-wheel-test_files/MR_small.dcm",
    ))
    .expect("MR");
    match build_volume(vec![ct.clone()]) {
        Err(SeriesError::NotAVolume(why)) => assert!(why.contains("single image"), "{why}"),
        other => panic!("{other:?}"),
    }
    match build_volume(vec![ct, mr]) {
        Err(SeriesError::NotAVolume(why)) => assert!(
            why.contains("more than one series") || why.contains("mixed"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    match read_slice(&testdata("dicom/dwv-tests/gdcm-US-RGB-8-esopecho.dcm")) {
        Err(SeriesError::NotAVolume(why) | SeriesError::Read { reason: why, .. }) => {
            assert!(!why.is_empty())
        }
        other => panic!("colour ultrasound is not a volume slice: {other:?}"),
    }
    match read_slice(&testdata(
        "dicom/pydicom-3.0.2-wheel-test_files/MR_truncated.dcm",
    )) {
        Err(e) => assert!(e.to_string().contains("MR_truncated.dcm"), "{e}"),
        Ok(_) => panic!("a truncated file is refused"),
    }
}
