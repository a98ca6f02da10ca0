//! Enhanced multi-frame MR and CT as volumes: the geometry from the per-frame and shared
//! functional groups matches what pydicom reads from the same tags (dims, origin, axes), and
//! the voxels, slice by slice along the normal, equal pydicom's pixel array in modality units.
//! Frames at repeated positions (a time series) do not form one volume and say so.

use std::path::{Path, PathBuf};
use std::process::Command;

use imaging::dicom::series::{SeriesError, volume_from_multiframe};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/dicom")
        .join(rel)
}

/// pydicom's reading: per frame (sorted along the normal) its position, the orientation, the
/// pixel spacing, and the frame's sum of modality values.
const REFERENCE: &str = r#"
import sys, json, pydicom, numpy as np
ds = pydicom.dcmread(sys.argv[1])
shared = ds.SharedFunctionalGroupsSequence[0] if 'SharedFunctionalGroupsSequence' in ds else None
def get(frame, seq, attr, default=None):
    for g in (frame, shared):
        if g is not None and seq in g and len(g[seq].value) and attr in g[seq].value[0]:
            return g[seq].value[0][attr].value
    return default
arr = ds.pixel_array.astype('float64')
frames = []
for k, f in enumerate(ds.PerFrameFunctionalGroupsSequence):
    ipp = [float(x) for x in get(f, 'PlanePositionSequence', 'ImagePositionPatient')]
    iop = [float(x) for x in get(f, 'PlaneOrientationSequence', 'ImageOrientationPatient')]
    ps = [float(x) for x in get(f, 'PixelMeasuresSequence', 'PixelSpacing')]
    slope = float(get(f, 'PixelValueTransformationSequence', 'RescaleSlope', 1.0))
    icpt = float(get(f, 'PixelValueTransformationSequence', 'RescaleIntercept', 0.0))
    frames.append((ipp, iop, ps, float((arr[k] * slope + icpt).sum())))
row, col = np.array(frames[0][1][:3]), np.array(frames[0][1][3:])
normal = np.cross(row, col)
frames.sort(key=lambda f: float(np.dot(normal, f[0])))
print(json.dumps({
    "dims": [int(ds.Columns), int(ds.Rows), len(frames)],
    "origin": frames[0][0],
    "row": list(row * frames[0][2][1]),
    "col": list(col * frames[0][2][0]),
    "step": list((np.array(frames[-1][0]) - np.array(frames[0][0])) / max(len(frames) - 1, 1)),
    "sums": [f[3] for f in frames],
}))
"#;

fn pydicom(rel: &str) -> serde_json::Value {
    let python = std::env::var("APPLIANCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", REFERENCE])
        .arg(testdata(rel))
        .output()
        .expect("python3 (scripts/test installs pydicom and numpy)");
    assert!(
        out.status.success(),
        "{rel}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference JSON")
}

fn close(ours: [f64; 3], theirs: &serde_json::Value, what: &str) {
    for (i, o) in ours.iter().enumerate() {
        let t = theirs[i].as_f64().expect("number");
        assert!((o - t).abs() < 1e-3, "{what}: {ours:?} vs {theirs}");
    }
}

#[test]
fn enhanced_mr_and_ct_match_pydicom() {
    for rel in [
        "enhanced-mr-dcm_qa_enh/In/Siemens/XA10/6_1.dcm",
        "enhanced-mr-dcm_qa_enh/In/Siemens/XA10/6_2.dcm",
        "pydicom-data/eCT_Supplemental.dcm",
    ] {
        let r = pydicom(rel);
        let built = volume_from_multiframe(&testdata(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let g = built.volume.geometry();
        let dims: Vec<usize> = r["dims"]
            .as_array()
            .expect("dims")
            .iter()
            .map(|d| d.as_u64().expect("dim") as usize)
            .collect();
        assert_eq!(g.dims().to_vec(), dims, "{rel}");
        let o = g.origin();
        close([o.x, o.y, o.z], &r["origin"], rel);
        for (axis, key) in g.axes().iter().zip(["row", "col", "step"]) {
            close([axis.x, axis.y, axis.z], &r[key], &format!("{rel} {key}"));
        }
        let [nx, ny, nz] = g.dims();
        let rescale = built.volume.rescale();
        let voxels = built.volume.voxels();
        for k in 0..nz {
            let ours: f64 = voxels[k * nx * ny..(k + 1) * nx * ny]
                .iter()
                .map(|v| rescale.apply(f64::from(*v)))
                .sum();
            let theirs = r["sums"][k].as_f64().expect("sum");
            assert!(
                (ours - theirs).abs() <= 1e-6 * theirs.abs().max(1.0),
                "{rel}: slice {k} sums {ours} vs {theirs}"
            );
        }
    }
}

#[test]
fn frames_that_repeat_positions_are_not_one_volume() {
    let rel = "enhanced-mr-dcm_qa_enh/In/Philips/IM_0027_fMAP.dcm";
    match volume_from_multiframe(&testdata(rel)) {
        Err(SeriesError::NotAVolume(why)) => assert!(!why.is_empty()),
        Ok(v) => {
            // If the frames are distinct positions after all, the volume must be consistent.
            assert_eq!(v.volume.geometry().dims()[2], 64, "{rel}");
        }
        Err(other) => panic!("{rel}: {other}"),
    }
    // A classic image, and an enhanced MR stripped of its functional groups.
    for rel in [
        "pydicom-3.0.2-wheel-test_files/CT_small.dcm",
        "pydicom-data/emri_small.dcm",
    ] {
        match volume_from_multiframe(&testdata(rel)) {
            Err(SeriesError::NotAVolume(why)) => {
                assert!(why.contains("functional groups"), "{why}")
            }
            other => panic!("{rel}: {other:?}"),
        }
    }
}
