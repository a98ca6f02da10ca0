//! `imaging import` with the daemon running: folders (the three test series), a DICOMDIR, a zip
//! archive, and every file of the test data manifest. Each file is stored, recognised as a
//! duplicate, or rejected with a reason; nothing crashes; what was rejected leaves no file and
//! no index row behind; QIDO-RS on the running daemon sees what was imported.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use e2e::{Daemon, Ports, bin, temp_dir};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata")
        .join(rel)
}

fn import(dir: &Path, paths: &[PathBuf]) -> (Output, String) {
    let out = Command::new(bin("imaging"))
        .current_dir(dir)
        .arg("import")
        .args(paths)
        .output()
        .expect("run imaging import");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

/// (stored, duplicates, rejected) from the summary's first line.
fn counts(summary: &str) -> (u64, u64, u64) {
    let first = summary.lines().next().unwrap_or_default();
    let n: Vec<u64> = first
        .split([',', ' '])
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(n.len(), 3, "summary: {summary}");
    (n[0], n[1], n[2])
}

fn instances(port: u16) -> usize {
    e2e::as_service::get(port, "/dicomweb/instances?limit=10000")
        .expect("QIDO-RS")
        .json()
        .as_array()
        .expect("array")
        .len()
}

fn files_in_store(dir: &Path) -> usize {
    e2e::files_under(&dir.join("data/dicom"))
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .count()
}

#[test]
fn folders_dicomdir_zip_and_the_whole_manifest() {
    let dir = temp_dir();
    let ports = Ports::free();
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir.path())
        .args(ports.args())
        .args(e2e::imaging_key_args())
        .args(["--set", "imaging.gpu=off"]);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(30));
    let port = ports.imaging_http;

    // The three series; Philips' DIRFILE is not an instance.
    let (out, summary) = import(dir.path(), &[testdata("series")]);
    assert_eq!(out.status.code(), Some(3), "{summary}");
    assert_eq!(counts(&summary), (238, 0, 1), "{summary}");
    assert!(
        summary.contains("DIRFILE: "),
        "the rejected file is named: {summary}"
    );
    assert_eq!(instances(port), 238, "the running daemon sees them");
    let (_, again) = import(dir.path(), &[testdata("series/ct-philips-headphantom-140")]);
    assert_eq!(counts(&again), (0, 140, 1), "{again}");

    // A DICOMDIR brings the files it references.
    let dicomdir = testdata("dicom/pydicom-3.0.2-wheel-test_files/dicomdirtests/DICOMDIR");
    let (out, summary) = import(dir.path(), &[dicomdir]);
    assert!(out.status.success(), "{summary}");
    assert_eq!(counts(&summary), (31, 0, 0), "{summary}");

    // A zip archive: five CT slices (already kept) and one new MR, plus a text file.
    let zip_path = dir.path().join("upload.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let ct = e2e::ct_series_files();
    for (i, f) in ct.iter().take(5).enumerate() {
        zip.start_file(format!("ct/{i}.dcm"), options).unwrap();
        std::io::Write::write_all(&mut zip, &std::fs::read(f).unwrap()).unwrap();
    }
    zip.start_file("mr/MR_small.dcm", options).unwrap();
    std::io::Write::write_all(
        &mut zip,
        &std::fs::read(testdata(
            "dicom/pydicom-3.0.2-wheel-test_files/MR_small.dcm",
        ))
        .unwrap(),
    )
    .unwrap();
    zip.start_file("notes.txt", options).unwrap();
    std::io::Write::write_all(&mut zip, b"referral notes").unwrap();
    zip.finish().unwrap();
    let (out, summary) = import(dir.path(), &[zip_path]);
    assert_eq!(out.status.code(), Some(3), "{summary}");
    assert_eq!(counts(&summary), (1, 5, 1), "{summary}");
    assert!(summary.contains("upload.zip!notes.txt: "), "{summary}");

    // Every file of the manifest: stored, a duplicate, or rejected with a reason.
    let before = instances(port);
    let manifest = std::fs::read_to_string(testdata("dicom/MANIFEST_dicom.csv")).unwrap();
    let listed: Vec<PathBuf> = manifest
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .map(|p| testdata("dicom").join(p))
        .filter(|p| p.is_file())
        // DICOMDIRs bring the files they reference (tested above), not one file each.
        .filter(|p| p.file_name().is_some_and(|n| n != "DICOMDIR"))
        .collect();
    assert!(listed.len() > 300, "{}", listed.len());
    let (out, summary) = import(dir.path(), &listed);
    assert!(
        out.status.code() == Some(3) || out.status.success(),
        "no crash: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (stored, duplicates, rejected) = counts(&summary);
    assert_eq!(
        (stored + duplicates + rejected) as usize,
        listed.len(),
        "every file accounted for: {summary}"
    );
    for line in summary.lines().skip(1) {
        let (_, why) = line.split_once(": ").expect("rejected FILE: reason");
        assert!(!why.trim().is_empty(), "{line}");
    }
    let after = instances(port);
    assert_eq!(after, before + stored as usize);
    assert_eq!(
        files_in_store(dir.path()),
        after,
        "one file per indexed instance: rejected files left nothing behind"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
