//! Pulling a clinic's cloud PACS over DICOMweb: Orthanc with its DICOMweb plugin holds the
//! 140-slice CT and an MR slice of 王建国 (Patient ID CL-0042, the clinic's record number); the
//! appliance, configured with it in `integration.dicomweb_sources`, fetches every instance
//! (QIDO-RS, then WADO-RS) into its data centre and links the MR study to 王建国 in the clinic's
//! institution, where a doctor sees it among the patient's studies. A slice the cloud adds
//! later arrives on the next pull, and nothing is fetched twice.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::api::{activate, admin as cli, call, new_user as person};
use e2e::{Ports, temp_dir};
use serde_json::Value;

const CLINIC: &str = "城东社区卫生服务中心";

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata")
        .join(rel)
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program} (scripts/test installs dcmtk): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `f` every 500 ms until it gives Some, for at most `secs`; the test fails with the
/// appliance's log when it never does.
fn until<T>(centre: &e2e::Daemon, secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "{what} within {secs} s:\n{}",
            centre.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A copy of pydicom's MR_small as a slice of 王建国's study (`new_instance`: with a fresh
/// SOP Instance UID, a second slice).
fn wang_slice(dir: &Path, name: &str, new_instance: bool) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(
        testdata("dicom/pydicom-3.0.2-wheel-test_files/MR_small.dcm"),
        &path,
    )
    .expect("copy MR_small");
    let file = path.to_str().expect("a UTF-8 temp path");
    let mut args = vec![
        "-nb",
        "-i",
        "(0008,0005)=ISO_IR 192",
        "-i",
        "(0010,0010)=Wang^Jianguo=王^建国",
        "-i",
        "(0010,0020)=CL-0042",
        "-i",
        "(0010,0030)=19580312",
        "-i",
        "(0010,0040)=M",
    ];
    if new_instance {
        args.push("-gin");
    }
    args.push(file);
    run("dcmodify", &args);
    path
}

/// The value of a counter on /metrics with this label set, 0 when absent.
fn counter(port: u16, name_and_labels: &str) -> u64 {
    let m = e2e::get(port, "/metrics").expect("metrics").body;
    m.lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_clinic_cloud_pacs_is_pulled_over_dicomweb() {
    // The clinic's cloud PACS.
    let cloud = e2e::orthanc::start();
    let store = |path: &Path| {
        run(
            "storescu",
            &[
                "-nh",
                "+sd",
                "+r",
                "-aec",
                "ORTHANC",
                "127.0.0.1",
                &cloud.dicom.to_string(),
                path.to_str().expect("a UTF-8 path"),
            ],
        );
    };
    store(&testdata("series/ct-philips-headphantom-140"));
    let scratch = temp_dir();
    store(&wang_slice(scratch.path(), "mr1.dcm", false));

    // The data centre, pulling every 10 s.
    let centre = temp_dir();
    let d = centre.path();
    cli(d, &["institution", "add", "--name", CLINIC]);
    let doctor = person(d, "doctor.p", "doctor", "1", "");
    let source = format!(
        "integration.dicomweb_sources=[\"http://127.0.0.1:{}/dicom-web={CLINIC};every=10\"]",
        cloud.http
    );
    let ports = Ports::free();
    let centre_daemon = e2e::api::start(d, &ports, &["--set", &source]);
    let me = activate(ports.http, &doctor);
    let get = |path: &str| call(ports.http, "GET", path, &me, &[], None).json();
    let studies_of_wang = || -> Option<Value> {
        let found = get("/api/v1/patients?q=CL-0042");
        let id = found["items"][0]["id"].as_i64()?;
        Some(get(&format!("/api/v1/patients/{id}/studies"))["items"].clone())
    };

    // 王建国 is a new patient of the clinic, with the MR study linked to him.
    let studies = until(&centre_daemon, 90, "the first pull", || {
        studies_of_wang().filter(|s| s.as_array().is_some_and(|a| !a.is_empty()))
    });
    let found = get("/api/v1/patients?q=CL-0042");
    assert_eq!(found["items"][0]["name"], "王建国", "{found}");
    assert_eq!(studies.as_array().map(Vec::len), Some(1), "{studies}");
    assert_eq!(studies[0]["instances"], 1, "{studies}");
    assert_eq!(studies[0]["modalities"], "MR", "{studies}");
    let mr_study = studies[0]["uid"].as_str().expect("uid").to_owned();
    // The CT came too (its patient has no birth date, so it waits for a patient to be
    // registered by hand): 141 instances stored.
    let stored = "dicomweb_pulled_instances_total{result=\"stored\"}";
    until(&centre_daemon, 90, "every instance stored", || {
        (counter(ports.http, stored) == 141).then_some(())
    });

    // The cloud adds a slice to the study: the next pull fetches that one only.
    store(&wang_slice(scratch.path(), "mr2.dcm", true));
    let studies = until(&centre_daemon, 60, "the second slice", || {
        studies_of_wang().filter(|s| s[0]["instances"] == 2)
    });
    assert_eq!(studies[0]["uid"], mr_study.as_str());
    // One more pull (10 s apart) changes nothing.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(counter(ports.http, stored), 142, "nothing fetched twice");
    assert_eq!(
        counter(ports.http, "dicomweb_pull_failures_total"),
        0,
        "no pull failed"
    );
}
