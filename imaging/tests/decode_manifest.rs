//! Decoding real files: every file in ../shared/testdata/dicom/MANIFEST_dicom.csv that an
//! independent decoder read ("OK") decodes here to the same size; no file, malformed ones included,
//! makes the decoder panic; lossless files equal their uncompressed twins (NEMA WG-04 REF,
//! pydicom's MR_small in every syntax) and lossy ones stay close. The layouts dicom-rs does not
//! decode yet are listed, with the reason, in `KNOWN_GAPS`.

use std::path::PathBuf;
use std::process::Command;

use imaging::dicom::decode::decode_file;

use e2e::testdata::dicom as testdata;

/// Files the reference decoded that we do not, with the reason. The test fails when this
/// list is wrong in either direction, so a fix must remove its entry. Empty: every file the
/// reference decodes is decoded here (the last ones are checked against pydicom below).
const KNOWN_GAPS: &[(&str, &str)] = &[];

#[test]
fn every_manifest_file_decodes_or_names_its_transfer_syntax() {
    let records = e2e::testdata::dicom_manifest();
    // Decode on every core; the checks below run in manifest order.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = records.len().div_ceil(threads);
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = records
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|r| std::panic::catch_unwind(|| decode_file(&testdata(&r[0]))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("decoder thread"))
            .collect()
    });
    let (mut ok, mut failures, mut panics) = (0, Vec::new(), Vec::new());
    for (r, outcome) in records.iter().zip(outcomes) {
        let Ok(result) = outcome else {
            panics.push(r[0].clone());
            continue;
        };
        let expected_ok = r[11].starts_with("OK (");
        match result {
            Ok(d) => {
                if expected_ok {
                    let (rows, cols): (usize, usize) =
                        (r[5].parse().unwrap_or(0), r[6].parse().unwrap_or(0));
                    let frames: usize = r[7].parse().unwrap_or(1).max(1);
                    assert_eq!((d.rows, d.cols, d.frames), (rows, cols, frames), "{}", r[0]);
                    ok += 1;
                }
            }
            Err(_) if expected_ok => failures.push(r[0].clone()),
            Err(_) => {} // the independent decoder failed too: any clear error is fine
        }
    }
    println!("{ok} decoded, {} failed", failures.len());
    assert!(panics.is_empty(), "the decoder panicked on {panics:?}");
    let mut known: Vec<String> = KNOWN_GAPS.iter().map(|(f, _)| (*f).to_owned()).collect();
    known.sort();
    failures.sort();
    assert_eq!(
        failures, known,
        "files the reference decoded but we did not, against the known gaps"
    );
    assert!(ok >= 198, "only {ok} files decoded");
}

/// Decompresses a NEMA reference file (zstd) into a temp file.
fn unzstd(rel: &str) -> PathBuf {
    let out = std::env::temp_dir().join(format!(
        "nema-{}-{}",
        std::process::id(),
        rel.replace('/', "_")
    ));
    let status = Command::new("zstd")
        .args(["-d", "-q", "-f", "-o"])
        .arg(&out)
        .arg(testdata(rel))
        .status()
        .expect("zstd");
    assert!(status.success());
    out
}

#[test]
fn lossless_files_equal_their_uncompressed_twins() {
    for image in [
        "CT1", "CT2", "MR1", "MR2", "MR3", "MR4", "NM1", "RG2", "RG3", "XA1",
    ] {
        let reference_file = unzstd(&format!("nema-wg04/REF/{image}_UNC.zst"));
        let reference = decode_file(&reference_file).expect("uncompressed reference");
        let _ = std::fs::remove_file(&reference_file);
        for syntax in ["J2KR", "JPLL", "JLSL", "RLE"] {
            let rel = format!("nema-wg04/{syntax}/{image}_{syntax}");
            if !testdata(&rel).exists() || KNOWN_GAPS.iter().any(|(f, _)| *f == rel) {
                continue;
            }
            let ours = decode_file(&testdata(&rel)).expect(&rel);
            assert_eq!(
                (ours.rows, ours.cols, ours.frames),
                (reference.rows, reference.cols, reference.frames),
                "{rel}"
            );
            assert!(
                ours.values == reference.values,
                "{rel}: pixels differ from the uncompressed reference"
            );
        }
        // Lossy: close to the reference (mean absolute error under 3% of the value range).
        for syntax in ["J2KI", "JPLY", "JLSN"] {
            let rel = format!("nema-wg04/{syntax}/{image}_{syntax}");
            if !testdata(&rel).exists() {
                continue;
            }
            // Every lossy file decodes here, the JPLY set (12-bit JPEG Extended whose scan
            // headers give a spectral end of 0, which libjpeg refuses) included.
            let ours = decode_file(&testdata(&rel)).expect(&rel);
            let (lo, hi) = reference
                .values
                .iter()
                .fold((i64::MAX, i64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
            let mae = ours
                .values
                .iter()
                .zip(&reference.values)
                .map(|(a, b)| (a - b).abs() as f64)
                .sum::<f64>()
                / reference.values.len() as f64;
            println!("{rel}: mean error {mae:.2} over a range of {}", hi - lo);
            assert!(
                mae <= 0.03 * (hi - lo).max(1) as f64,
                "{rel}: mean error {mae} over a range of {}",
                hi - lo
            );
        }
    }
    let base =
        decode_file(&testdata("pydicom-3.0.2-wheel-test_files/MR_small.dcm")).expect("MR_small");
    for twin in [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_expb.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ] {
        let d =
            decode_file(&testdata(&format!("pydicom-3.0.2-wheel-test_files/{twin}"))).expect(twin);
        assert!(d.values == base.values, "{twin} differs from MR_small.dcm");
    }
}

/// Values pydicom (the reference reader, installed by scripts/test) decodes from `rel`: their
/// count, sum and the sum of every 997th.
fn pydicom_values(rel: &str) -> (usize, i64, i64) {
    let script = "import sys, pydicom\n\
a = pydicom.dcmread(sys.argv[1]).pixel_array.astype('int64').ravel()\n\
print(a.size, int(a.sum()), int(a[::997].sum()))\n";
    let out = e2e::imaging::python(script, [testdata(rel)]);
    let text = String::from_utf8_lossy(&out);
    let n: Vec<i64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0] as usize, n[1], n[2])
}

/// The layouts read natively (1-bit, 32-bit, planar configuration 1, big endian, RLE at any
/// width) agree with their twins and with pydicom.
#[test]
fn native_layouts_agree_with_twins_and_pydicom() {
    let values = |rel: &str| decode_file(&testdata(rel)).expect(rel).values;
    for (a, b) in [
        (
            "pydicom-3.0.2-wheel-test_files/rtdose.dcm",
            "pydicom-3.0.2-wheel-test_files/rtdose_expb.dcm",
        ),
        (
            "pydicom-3.0.2-wheel-test_files/rtdose_1frame.dcm",
            "pydicom-3.0.2-wheel-test_files/rtdose_expb_1frame.dcm",
        ),
        ("pydicom-data/liver.dcm", "pydicom-data/liver_expb.dcm"),
        (
            "pydicom-data/SC_rgb_32bit.dcm",
            "pydicom-data/SC_rgb_expb_32bit.dcm",
        ),
        (
            "pydicom-data/SC_rgb_32bit_2frame.dcm",
            "pydicom-data/SC_rgb_expb_32bit_2frame.dcm",
        ),
        // JPEG-LS colour, lossless, in each interleave mode (meta groups without a length).
        (
            "pydicom-data/JLSL_RGB_ILV0.dcm",
            "pydicom-data/JLSL_RGB_ILV1.dcm",
        ),
        (
            "pydicom-data/JLSL_RGB_ILV0.dcm",
            "pydicom-data/JLSL_RGB_ILV2.dcm",
        ),
        (
            "pydicom-3.0.2-wheel-test_files/liver_1frame.dcm",
            "pydicom-3.0.2-wheel-test_files/liver_expb_1frame.dcm",
        ),
    ] {
        assert!(values(a) == values(b), "{a} and {b} differ");
    }
    for rel in [
        "pydicom-3.0.2-wheel-test_files/rtdose.dcm",
        "pydicom-3.0.2-wheel-test_files/ExplVR_BigEnd.dcm",
        "pydicom-data/color-pl.dcm",
        "pydicom-data/liver.dcm",
        "pydicom-data/liver_nonbyte_aligned.dcm",
        "pydicom-data/SC_rgb_32bit_2frame.dcm",
        "pydicom-3.0.2-wheel-test_files/SC_rgb_rle_32bit_2frame.dcm",
        "pydicom-3.0.2-wheel-test_files/SC_rgb_rle_32bit.dcm",
        "pydicom-3.0.2-wheel-test_files/SC_ybr_full_422_uncompressed.dcm",
    ] {
        let ours = values(rel);
        let sum: i64 = ours.iter().sum();
        if rel.contains("ybr") {
            // Converted to RGB: pydicom rounds its own way, within one level per sample.
            let (n, theirs, _) = pydicom_values(rel);
            assert_eq!(ours.len(), n, "{rel}");
            assert!(
                (sum - theirs).unsigned_abs() <= n as u64,
                "{rel}: {sum} vs {theirs}"
            );
            continue;
        }
        let sampled: i64 = ours.iter().step_by(997).sum();
        assert_eq!((ours.len(), sum, sampled), pydicom_values(rel), "{rel}");
    }
}

/// Every value pydicom (with pillow and pylibjpeg's libjpeg and openjpeg plugins, installed by
/// scripts/test) decodes from `rel`, as f64.
fn pydicom_array(rel: &str) -> Vec<f64> {
    let script = "import sys, pydicom\n\
a = pydicom.dcmread(sys.argv[1]).pixel_array\n\
sys.stdout.buffer.write(a.astype('<f8').ravel().tobytes())\n";
    e2e::imaging::python(script, [testdata(rel)])
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// The layouts decoded here rather than by dicom-rs (12-bit JPEG, RGB JPEG without a colour
/// transform, a data set in implicit VR under an explicit VR meta group, 1-bit JPEG 2000,
/// JPEG-LS padded before EOI, float pixel data) agree with pydicom: exactly where the coding is
/// lossless, within one level where two JPEG decoders round the inverse DCT their own ways.
#[test]
fn layouts_decoded_here_agree_with_pydicom() {
    for (rel, tolerance) in [
        ("pydicom-3.0.2-wheel-test_files/JPGExtended.dcm", 1.0),
        ("pydicom-3.0.2-wheel-test_files/SC_rgb_jpeg.dcm", 1.0),
        ("pydicom-data/liver_j2k.dcm", 0.0),
        ("pydicom-data/liver_nonbyte_aligned_j2k.dcm", 0.0),
        ("nema-wg04/JLSL/MR1_JLSL", 0.0),
        ("pydicom-data/parametric_map_float.dcm", 0.0),
        ("pydicom-data/parametric_map_double_float.dcm", 0.0),
    ] {
        let ours = decode_file(&testdata(rel)).expect(rel);
        let values: Vec<f64> = match &ours.real {
            Some(real) => real.values.clone(),
            None => ours.values.iter().map(|&v| v as f64).collect(),
        };
        let theirs = pydicom_array(rel);
        assert_eq!(values.len(), theirs.len(), "{rel}");
        let worst = values
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let mean = values
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / values.len() as f64;
        println!("{rel}: worst {worst}, mean {mean:.4}");
        assert!(worst <= tolerance, "{rel}: off by up to {worst}");
        assert!(mean <= 0.1, "{rel}: off by {mean} on average");
        if let Some(real) = &ours.real {
            // The integer view counts in the step: within half a step of every sample.
            for (v, r) in ours.values.iter().zip(&real.values) {
                assert!(
                    (*v as f64 * real.step - r).abs() <= real.step / 2.0,
                    "{rel}"
                );
            }
        }
    }
}
