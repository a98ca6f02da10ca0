//! C-STORE into imaging with dcmtk's storescu: the 140-slice CT series arrives as 140 DICOM
//! files under DATA_DIR/dicom, each readable by dcmdump, and QIDO-RS shows 1 study, 1 series,
//! 140 instances; sending the series again changes nothing (storing is idempotent); Philips'
//! DIRFILE, which is not DICOM, is not stored. After a kill -9 and the debris a crash can leave
//! (a temp file, a file without index rows), plus a file deleted behind our back, the start-up
//! check repairs the store and the index agrees with the files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{Daemon, Ports, bin, temp_dir};

fn series() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/series/ct-philips-headphantom-140")
}

fn storescu(port: u16) -> (bool, String) {
    let out = Command::new("storescu")
        .args([
            "-nh",
            "+sd",
            "+r",
            "-aet",
            "STORESCU",
            "-aec",
            "APPLIANCE",
            "127.0.0.1",
            &port.to_string(),
        ])
        .arg(series())
        .output()
        .expect("run storescu (scripts/test installs dcmtk)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every file under DATA_DIR/dicom except the index database.
fn stored(dir: &Path) -> Vec<PathBuf> {
    e2e::files_under(&dir.join("data/dicom"))
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("index.sqlite"))
        })
        .collect()
}

fn count(port: u16, path: &str) -> usize {
    let r = e2e::as_service::get(port, path).expect("QIDO-RS");
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json().as_array().expect("array").len()
}

fn start(dir: &Path) -> (Daemon, Ports) {
    let ports = Ports::free();
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir)
        .args(ports.args())
        .args(e2e::imaging_key_args())
        .args(["--set", "imaging.gpu=off"]);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(60));
    (d, ports)
}

#[test]
fn storescu_stores_the_series_once() {
    let dir = temp_dir();
    let (mut d, ports) = start(dir.path());

    let (_, log) = storescu(ports.dicom);
    let files = stored(dir.path());
    assert_eq!(files.len(), 140, "{log}");
    assert!(
        files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "dcm")),
        "no temp files left: {files:?}"
    );
    // Every stored file reads back; pixels equal the originals (compared through dcmdump's
    // independent reading of a few of them, and our decoder for the rest).
    for f in &files {
        let d = imaging_decode(f);
        assert_eq!((d.0, d.1), (512, 512), "{}", f.display());
    }
    let dump = Command::new("dcmdump")
        .arg("+P")
        .arg("0008,0018")
        .arg(&files[0])
        .output()
        .expect("dcmdump");
    assert!(dump.status.success());
    let uid = String::from_utf8_lossy(&dump.stdout);
    let name = files[0].file_stem().unwrap().to_string_lossy().into_owned();
    assert!(
        uid.contains(&name),
        "file named by its SOP Instance UID: {uid}"
    );

    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let _ = storescu(ports.dicom);
    let again = stored(dir.path());
    assert_eq!(again, files, "sending again stores nothing new");
    let after: Vec<Vec<u8>> = again.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(before == after, "identical content after a second store");

    let metrics = e2e::as_service::get(ports.imaging_http, "/metrics")
        .expect("metrics")
        .body;
    for line in [
        "imaging_instances_total{source=\"dicom\",outcome=\"stored\"} 140",
        "imaging_instances_total{source=\"dicom\",outcome=\"duplicate\"} 140",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
    let port = ports.imaging_http;
    assert_eq!(count(port, "/dicomweb/studies"), 1);
    assert_eq!(count(port, "/dicomweb/series"), 1);
    assert_eq!(count(port, "/dicomweb/instances"), 140);
    let study = e2e::as_service::get(port, "/dicomweb/studies")
        .unwrap()
        .json()[0]
        .clone();
    assert_eq!(study["00201208"]["Value"][0], 140);

    // dcmtk's findscu against our C-FIND SCP, at every level.
    let out = dir.path().join("find");
    let study_rsp = findscu(
        ports.dicom,
        &out,
        "-S",
        &[
            "QueryRetrieveLevel=STUDY",
            "PatientName",
            "StudyInstanceUID",
            "NumberOfStudyRelatedInstances",
            "ModalitiesInStudy",
        ],
    );
    assert_eq!(study_rsp.len(), 1, "{study_rsp:?}");
    assert!(
        study_rsp[0].contains("NumberOfStudyRelatedInstances") && study_rsp[0].contains("[140]"),
        "{}",
        study_rsp[0]
    );
    assert!(
        study_rsp[0].contains("ModalitiesInStudy") && study_rsp[0].contains("[CT]"),
        "{}",
        study_rsp[0]
    );
    let uid = study["0020000D"]["Value"][0].as_str().unwrap().to_owned();
    let images = findscu(
        ports.dicom,
        &out,
        "-S",
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("StudyInstanceUID={uid}"),
            "SOPInstanceUID",
            "InstanceNumber",
            "Rows",
        ],
    );
    assert_eq!(images.len(), 140);
    assert!(
        images.iter().all(|d| d.contains("(0028,0010) US 512")),
        "{}",
        images[0]
    );
    let none = findscu(
        ports.dicom,
        &out,
        "-S",
        &[
            "QueryRetrieveLevel=SERIES",
            "Modality=MR",
            "SeriesInstanceUID",
        ],
    );
    assert!(none.is_empty(), "{none:?}");
    let patients = findscu(
        ports.dicom,
        &out,
        "-P",
        &["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName"],
    );
    assert_eq!(patients.len(), 1, "{patients:?}");

    // kill -9, then the debris of a crash and a file removed behind our back.
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(20));
    let lost = files[0].clone();
    std::fs::remove_file(&lost).unwrap();
    let tmp = files[1].with_file_name(".half-written.1.tmp");
    std::fs::write(&tmp, b"half").unwrap();
    let extra = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/dicom/pydicom-3.0.2-wheel-test_files/CT_small.dcm");
    let unindexed = dir
        .path()
        .join("data/dicom")
        .join(imaging::store::relative_path(
            "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
        ));
    std::fs::create_dir_all(unindexed.parent().unwrap()).unwrap();
    std::fs::copy(extra, &unindexed).unwrap();

    let (mut d, ports) = start(dir.path());
    let port = ports.imaging_http;
    assert!(!tmp.exists(), "temp file removed");
    assert_eq!(
        count(port, "/dicomweb/studies"),
        2,
        "the unindexed file is indexed"
    );
    assert_eq!(
        count(port, "/dicomweb/instances"),
        140,
        "139 kept + 1 found"
    );
    let lost_uid = lost.file_stem().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        count(
            port,
            &format!("/dicomweb/instances?SOPInstanceUID={lost_uid}")
        ),
        0,
        "the row of the deleted file is gone"
    );
    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)).code(),
        Some(0),
        "{}",
        d.stderr()
    );
    let log = d.stderr();
    assert!(log.contains("instance file missing"), "{log}");
    assert!(log.contains(&lost_uid), "{log}");
}

/// Runs findscu (`-S` study root, `-P` patient root) with these keys and returns each
/// response identifier as dcmdump prints it.
fn findscu(port: u16, out: &Path, root: &str, keys: &[&str]) -> Vec<String> {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).expect("response folder");
    let mut cmd = Command::new("findscu");
    cmd.args([root, "-aet", "FINDSCU", "-aec", "APPLIANCE", "-X", "-od"])
        .arg(out);
    for k in keys {
        cmd.args(["-k", k]);
    }
    let run = cmd
        .args(["127.0.0.1", &port.to_string()])
        .output()
        .expect("run findscu (scripts/test installs dcmtk)");
    assert!(
        run.status.success(),
        "findscu {keys:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("responses")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let d = Command::new("dcmdump").arg(f).output().expect("dcmdump");
            String::from_utf8_lossy(&d.stdout).into_owned()
        })
        .collect()
}

/// (rows, columns) of a stored file, read by dcmdump (an independent reader).
fn imaging_decode(f: &Path) -> (u32, u32) {
    let out = Command::new("dcmdump")
        .args(["+P", "0028,0010", "+P", "0028,0011"])
        .arg(f)
        .output()
        .expect("dcmdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let nums: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    assert!(
        out.status.success() && nums.len() == 2,
        "{}: {text}",
        f.display()
    );
    (nums[0], nums[1])
}

/// Four storescu processes at once, each with a quarter of the series: every instance is kept
/// once, none is lost or doubled.
#[test]
fn concurrent_associations_keep_every_instance() {
    let dir = temp_dir();
    let (mut d, ports) = start(dir.path());
    let files = e2e::ct_series_files();
    assert_eq!(files.len(), 140);
    // Overlapping quarters: the middle files are sent twice, by two associations at once.
    let children: Vec<_> = (0..4usize)
        .map(|k| {
            let from = (k * 35).saturating_sub(5);
            let to = ((k + 1) * 35 + 5).min(140);
            Command::new("storescu")
                .args(["-aet", &format!("SCU{k}"), "-aec", "APPLIANCE", "127.0.0.1"])
                .arg(ports.dicom.to_string())
                .args(&files[from..to])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("storescu")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("storescu");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(count(ports.imaging_http, "/dicomweb/instances"), 140);
    assert_eq!(stored(dir.path()).len(), 140, "one file per instance");
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
