//! Window/level against pydicom's `apply_windowing` / `apply_voi_lut` (and dcmtk's dcmj2pnm)
//! on real files: linear, linear-exact and sigmoid windows, a VOI LUT sequence, and
//! MONOCHROME1, within 1 grey level.

mod common;

use std::process::Command;

use common::{f, read_i16, reference, tempfile_dir, testdata};
use render::mpr::{MprRequest, Sampling, render};
use render::stack::{frame_plane, grey_stack};
use render::{GreyPipeline, Rescale, Viewport, Voi, VoiFunction, VoiLut, Window};

/// Renders the file's stored values 1:1 through our pipeline and returns (ours, pydicom's).
fn compare(
    file: &str,
    mode: &str,
    window: Option<(f64, f64)>,
) -> (Vec<u8>, Vec<u8>, serde_json::Value) {
    let dir = tempfile_dir();
    let path = testdata(file);
    let mut args = vec![
        path.to_str().expect("path").to_owned(),
        dir.to_str().expect("dir").to_owned(),
        mode.to_owned(),
    ];
    if let Some((c, w)) = window {
        args.extend([c.to_string(), w.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    reference("voi.py", &args);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).expect("meta"))
            .expect("json");
    let stored = read_i16(&dir.join("stored.i16"));
    let expected = std::fs::read(dir.join("expected.u8")).expect("expected");
    let (rows, cols) = (
        meta["rows"].as_u64().expect("rows") as usize,
        meta["cols"].as_u64().expect("cols") as usize,
    );
    let rescale = Rescale {
        slope: f(&meta["slope"]),
        intercept: f(&meta["intercept"]),
    };
    let voi = match (mode, window) {
        ("LUT", _) => Voi::Lut(VoiLut {
            first_mapped: meta["lut"]["first_mapped"].as_i64().expect("first") as i32,
            bits: meta["lut"]["bits"].as_u64().expect("bits") as u8,
            entries: meta["lut"]["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .map(|e| e.as_u64().expect("entry") as u16)
                .collect(),
        }),
        (m, Some((center, width))) => Voi::Window(Window {
            center,
            width,
            function: match m {
                "LINEAR_EXACT" => VoiFunction::LinearExact,
                "SIGMOID" => VoiFunction::Sigmoid,
                _ => VoiFunction::Linear,
            },
        }),
        _ => unreachable!("a window mode needs a window"),
    };
    let pipeline = GreyPipeline {
        rescale,
        voi,
        monochrome1: meta["photometric"] == "MONOCHROME1",
        invert: false,
    };
    let volume = grey_stack(cols, rows, [1.0, 1.0], 1, stored, rescale).expect("stack");
    let vp = Viewport::native(
        frame_plane(volume.geometry(), 0),
        cols as u32,
        rows as u32,
        [1.0, 1.0],
    );
    let table = pipeline.table().expect("table");
    let frame = render(
        &volume,
        &table,
        &MprRequest {
            viewport: &vp,
            sampling: Sampling::Nearest,
            slab: None,
            background: 0,
        },
    )
    .expect("render");
    let _ = std::fs::remove_dir_all(&dir);
    (frame.bytes().to_vec(), expected, meta)
}

fn assert_within_one(ours: &[u8], theirs: &[u8], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: sizes");
    let worst = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    let off = ours.iter().zip(theirs).filter(|(a, b)| a != b).count();
    assert!(
        worst <= 1,
        "{what}: worst difference {worst} grey levels ({off} pixels differ)"
    );
    // The comparison must be about something: the image is not flat.
    let distinct = theirs
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(
        distinct > 8,
        "{what}: reference has only {distinct} grey levels"
    );
}

#[test]
fn ct_windows_linear_exact_sigmoid() {
    for (mode, c, w) in [
        ("LINEAR", 40.0, 400.0),
        ("LINEAR", -600.0, 1500.0),
        ("LINEAR_EXACT", 40.0, 400.0),
        ("SIGMOID", 40.0, 400.0),
        ("LINEAR", 1000.0, 1.0),
    ] {
        let (ours, theirs, _) = compare(
            "dicom/pydicom-3.0.2-wheel-test_files/CT_small.dcm",
            mode,
            Some((c, w)),
        );
        if w > 1.0 {
            assert_within_one(&ours, &theirs, &format!("CT_small {mode} {c}/{w}"));
        } else {
            assert_eq!(ours, theirs, "a width-1 window is a threshold");
        }
    }
}

#[test]
fn mr_and_the_140_slice_ct() {
    let (ours, theirs, _) = compare(
        "dicom/pydicom-3.0.2-wheel-test_files/MR_small.dcm",
        "LINEAR",
        Some((600.0, 1200.0)),
    );
    assert_within_one(&ours, &theirs, "MR_small linear");
    let (ours, theirs, _) = compare(
        "dicom/pydicom-3.0.2-wheel-test_files/MR_small.dcm",
        "SIGMOID",
        Some((600.0, 1200.0)),
    );
    assert_within_one(&ours, &theirs, "MR_small sigmoid");
    // Any one slice of the 140-slice CT (not Philips' DIRFILE).
    let first = first_file(&testdata("series/ct-philips-headphantom-140"));
    let rel = first
        .strip_prefix(testdata(""))
        .expect("under testdata")
        .to_str()
        .expect("utf-8")
        .to_owned();
    let (ours, theirs, _) = compare(&rel, "LINEAR", Some((40.0, 80.0)));
    assert_within_one(&ours, &theirs, "CT head phantom, brain window");
}

#[test]
fn voi_lut_sequence() {
    let (ours, theirs, meta) = compare("dicom/pydicom-data/vlut_04.dcm", "LUT", None);
    assert!(
        meta["lut"]["entries"]
            .as_array()
            .is_some_and(|e| e.len() > 100)
    );
    assert_within_one(&ours, &theirs, "vlut_04 VOI LUT");
}

#[test]
fn monochrome1_is_shown_inverted() {
    let (ours, theirs, meta) = compare(
        "dicom/dwv-tests/gdcm-CR-MONO1-10-chest.dcm",
        "LINEAR",
        Some((512.0, 1024.0)),
    );
    assert_eq!(meta["photometric"], "MONOCHROME1");
    assert_within_one(&ours, &theirs, "CR MONOCHROME1");
}

fn first_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            return first_file(&p);
        }
        if p.file_name().is_some_and(|n| n != "DIRFILE") {
            return p;
        }
    }
    panic!("no file under {}", dir.display());
}

/// dcmtk's dcmj2pnm renders the same window to a PGM: a second independent reference.
#[test]
fn ct_window_matches_dcmj2pnm() {
    let file = testdata("dicom/pydicom-3.0.2-wheel-test_files/CT_small.dcm");
    let dir = tempfile_dir();
    let pgm = dir.join("out.pgm");
    let status = Command::new("dcmj2pnm")
        .args(["--quiet", "+Ww", "40", "400"])
        .arg(&file)
        .arg(&pgm)
        .status()
        .expect("run dcmj2pnm (scripts/test installs dcmtk)");
    assert!(status.success());
    let bytes = std::fs::read(&pgm).expect("pgm");
    // P5\n<w> <h>\n<max>\n<data>
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    assert_eq!(fields[0], "P5");
    assert_eq!(fields[3], "255");
    let theirs = &bytes[at + 1..];
    let (ours, _, _) = compare(
        "dicom/pydicom-3.0.2-wheel-test_files/CT_small.dcm",
        "LINEAR",
        Some((40.0, 400.0)),
    );
    assert_within_one(&ours, theirs, "CT_small vs dcmj2pnm");
    let _ = std::fs::remove_dir_all(&dir);
}
