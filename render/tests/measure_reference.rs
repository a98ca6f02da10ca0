//! Measurements agree with geometry computed straight from the DICOM tags (each slice's own
//! Image Position, Image Orientation and Pixel Spacing, as pydicom read them) within 0.1 mm, on
//! the CT phantom and the sagittal MR.

mod common;

use common::{Series, ct140, f, mr_hfs};
use render::measure::{Roi, angle, distance, probe, roi_stats};
use render::{Plane, V3};

/// PS3.3 C.7.6.2.1.1: the patient position of pixel (column i, row j) of slice k, from that
/// slice's own tags.
fn from_tags(s: &Series, i: f64, j: f64, k: usize) -> V3 {
    let m = &s.meta;
    let v = |a: &serde_json::Value| V3::new(f(&a[0]), f(&a[1]), f(&a[2]));
    let ipp = v(&m["positions"][k]);
    let (row, col) = (v(&m["row_cosine"]), v(&m["col_cosine"]));
    let (dr, dc) = (f(&m["pixel_spacing"][0]), f(&m["pixel_spacing"][1]));
    ipp + row * (dc * i) + col * (dr * j)
}

fn check_series(s: &Series, pairs: &[([usize; 3], [usize; 3])]) {
    let g = s.volume.geometry();
    for (a, b) in pairs {
        let pa = g.voxel_to_patient(V3::new(a[0] as f64, a[1] as f64, a[2] as f64));
        let pb = g.voxel_to_patient(V3::new(b[0] as f64, b[1] as f64, b[2] as f64));
        let ta = from_tags(s, a[0] as f64, a[1] as f64, a[2]);
        let tb = from_tags(s, b[0] as f64, b[1] as f64, b[2]);
        assert!((pa - ta).norm() < 0.1, "voxel {a:?}: {pa:?} vs tags {ta:?}");
        let (ours, tags) = (distance(pa, pb), (ta - tb).norm());
        assert!(
            (ours - tags).abs() < 0.1,
            "{a:?}-{b:?}: {ours} mm vs {tags} mm from the tags"
        );
        assert!(ours > 10.0, "a meaningful distance");
        // The probe finds the same voxel back.
        let p = probe(&s.volume, pa).expect("inside");
        assert_eq!(p.voxel, *a);
    }
}

#[test]
fn distances_on_the_ct_phantom() {
    check_series(
        ct140(),
        &[
            ([10, 20, 0], [500, 480, 139]),
            ([256, 256, 0], [256, 256, 100]),
            ([0, 0, 70], [511, 0, 70]),
        ],
    );
}

#[test]
fn distances_on_the_sagittal_mr() {
    check_series(
        mr_hfs(),
        &[([0, 0, 0], [255, 255, 34]), ([128, 30, 3], [128, 200, 30])],
    );
}

#[test]
fn angles_and_areas_from_the_tags() {
    let s = ct140();
    let k = 70;
    let o = from_tags(s, 100.0, 100.0, k);
    let a = from_tags(s, 300.0, 100.0, k);
    let b = from_tags(s, 100.0, 300.0, k);
    let ang = angle(a, o, b).expect("angle");
    assert!((ang - 90.0).abs() < 1e-6, "{ang}");
    // A rectangle 200 columns by 100 rows on slice 70: its area from the pixel spacing.
    let plane = Plane::new(
        from_tags(s, 255.5, 255.5, k),
        V3::new(1.0, 0.0, 0.0),
        V3::new(0.0, 1.0, 0.0),
    )
    .expect("plane");
    let stats = roi_stats(
        &s.volume,
        &plane,
        &Roi::Rectangle {
            a: from_tags(s, 100.0, 100.0, k),
            b: from_tags(s, 300.0, 200.0, k),
        },
    )
    .expect("roi");
    let ps = &s.meta["pixel_spacing"];
    let expected = 200.0 * f(&ps[1]) * 100.0 * f(&ps[0]);
    assert!(
        (stats.area_mm2 - expected).abs() < 0.1,
        "{} vs {expected}",
        stats.area_mm2
    );
    assert!(stats.samples > 15_000 && stats.min <= stats.mean && stats.mean <= stats.max);
    // Every sample is a voxel of slice 70 inside the rectangle, so the mean equals theirs.
    let mut sum = 0.0;
    let mut n = 0.0;
    for j in 100..=200 {
        for i in 100..=300 {
            sum += s
                .volume
                .rescale()
                .apply(f64::from(s.volume.get(i, j, k).expect("inside")));
            n += 1.0;
        }
    }
    let direct = sum / n;
    assert_eq!(stats.samples, 201 * 101);
    assert!(
        (stats.mean - direct).abs() < 1e-6,
        "ROI mean {} HU vs {direct} HU over the same voxels",
        stats.mean
    );
}
