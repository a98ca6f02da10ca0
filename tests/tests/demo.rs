//! `appliance demo-data` on an empty data directory, with nothing outside the repository: it
//! prints a login and one-time password for every role, writes the synthetic studies (head CT,
//! chest CR, carotid ultrasound cine) as DICOM and stores them in imaging, and attaches them to
//! two consultation drafts; pydicom reads what imaging stored, the printed logins work, the
//! experts have tomorrow's slots, the studies are queryable and the CT renders; a second run
//! refuses to touch a filled database. `--series` imports given DICOM instead.

use std::process::Command;
use std::time::Duration;

use e2e::api::{activate, call};
use e2e::{Ports, bin, temp_dir};

#[test]
fn demo_data_builds_an_alliance_to_try() {
    let dir = temp_dir();
    let d = dir.path();
    let demo = || {
        Command::new(bin("appliance"))
            .current_dir(d)
            .arg("demo-data")
            .env_remove("RUST_LOG")
            .output()
            .expect("appliance demo-data")
    };
    let out = demo();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login = |name: &str| -> (String, String) {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in:\n{text}"));
        let password = line.split_whitespace().nth(1).expect("a password");
        (name.to_owned(), password.to_owned())
    };
    for role in [
        "system_admin",
        "security_admin",
        "audit_admin",
        "coordinator",
        "qc_reviewer",
        "referral_staff",
        "expert",
        "doctor",
    ] {
        assert!(text.contains(role), "{role} in:\n{text}");
    }
    // 40 CT slices, the CR and the ultrasound cine; the folder they were written to is gone.
    assert!(
        text.contains("stored 42, duplicates 0, rejected 0"),
        "{text}"
    );
    assert!(!d.join("data/demo-dicom").exists());
    pydicom_reads_the_stored_studies(&d.join("data/dicom"));

    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &[]);
    let port = ports.http;
    let zhao = activate(port, &login("doctor.zhao"));
    let mine = call(port, "GET", "/api/v1/consultations", &zhao, &[], None).json();
    let draft = &mine["items"][0];
    assert_eq!(draft["state"], "draft", "{mine}");
    assert_eq!(draft["studies"].as_array().map(Vec::len), Some(1), "{mine}");
    let id = draft["id"].as_i64().expect("an id");
    let token = call(
        port,
        "POST",
        &format!("/api/v1/consultations/{id}/view-token"),
        &zhao,
        &[],
        None,
    );
    assert_eq!(token.status, 200, "{}", token.body);
    let experts = call(port, "GET", "/api/v1/experts", &zhao, &[], None).json();
    let items = experts["items"].as_array().expect("experts");
    assert_eq!(items.len(), 3, "{experts}");
    let li = items
        .iter()
        .find(|e| e["name"] == "李主任")
        .expect("李主任");
    let slots = call(
        port,
        "GET",
        &format!("/api/v1/experts/{}/slots?free=true", li["id"]),
        &zhao,
        &[],
        None,
    )
    .json();
    assert_eq!(slots["items"].as_array().map(Vec::len), Some(4), "{slots}");
    let qian = activate(port, &login("doctor.qian"));
    let theirs = call(port, "GET", "/api/v1/consultations", &qian, &[], None).json();
    assert_eq!(
        theirs["items"][0]["studies"].as_array().map(Vec::len),
        Some(2),
        "{theirs}"
    );
    // DICOMweb reads need a credential: a service token signed with the stack's key.
    let bearer = format!(
        "Bearer {}",
        e2e::service_token(&e2e::stack_signer(&dir.path().join("data")), false)
    );
    let get =
        |port, path: &str| e2e::request(port, "GET", path, &[("Authorization", &bearer)], &[]);
    let studies = get(ports.imaging_http, "/dicomweb/studies").expect("QIDO");
    let studies = studies.json();
    let mut modalities: Vec<String> = studies
        .as_array()
        .expect("studies")
        .iter()
        .map(|s| s["00080061"]["Value"][0].as_str().unwrap_or("").to_owned())
        .collect();
    modalities.sort();
    assert_eq!(modalities, ["CR", "CT", "US"], "{studies}");
    // The CT's middle slice renders on the server, as the viewer's frames do.
    let ct = &draft["studies"][0];
    let ct = ct.as_str().expect("a study UID");
    let instances = get(
        ports.imaging_http,
        &format!("/dicomweb/studies/{ct}/instances"),
    )
    .expect("QIDO instances")
    .json();
    assert_eq!(instances.as_array().map(Vec::len), Some(40), "{instances}");
    let series = instances[20]["0020000E"]["Value"][0]
        .as_str()
        .expect("series");
    let sop = instances[20]["00080018"]["Value"][0]
        .as_str()
        .expect("instance");
    let frame = get(
        ports.imaging_http,
        &format!("/dicomweb/studies/{ct}/series/{series}/instances/{sop}/rendered"),
    )
    .expect("rendered");
    assert_eq!(frame.status, 200, "{}", frame.body);
    assert_eq!(frame.header("content-type"), Some("image/jpeg"));
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code(), Some(0));

    let again = demo();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has institutions"));
}

/// pydicom (the independent reader) opens every stored instance: 40 CT slices 256x256 with
/// their HU rescale and positions 3 mm apart, a 600x512 CR with imager pixel spacing, and a
/// 24-frame ultrasound cine at 40 ms a frame.
fn pydicom_reads_the_stored_studies(store: &std::path::Path) {
    let script = r#"
import sys, pathlib, pydicom
files = [f for f in pathlib.Path(sys.argv[1]).rglob('*.dcm')]
ct, other = [], []
for f in files:
    ds = pydicom.dcmread(f)
    px = ds.pixel_array
    if ds.Modality == 'CT':
        hu = px * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        ct.append((float(ds.ImagePositionPatient[2]), px.shape, float(hu.min()), float(hu.max())))
    else:
        other.append((ds.Modality, px.shape, str(ds.get('ImagerPixelSpacing', '')),
                      str(ds.get('FrameTime', '')), str(ds.PatientName)))
ct.sort()
steps = {round(b[0] - a[0], 3) for a, b in zip(ct, ct[1:])}
print('ct', len(ct), ct[0][1], steps, min(c[2] for c in ct), max(c[3] for c in ct))
for o in sorted(other):
    print(*o)
"#;
    let python = std::env::var("APPLIANCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", script])
        .arg(store)
        .output()
        .expect("python3 with pydicom (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("ct 40 (256, 256) {3.0} -1000.0 "),
        "{text}"
    );
    let bone: f64 = lines[0]
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("max HU");
    assert!(bone > 1000.0, "{text}");
    assert_eq!(lines[1], "CR (600, 512) [0.7, 0.7]  刘^芳", "{text}");
    assert_eq!(lines[2], "US (24, 240, 320)  40 刘^芳", "{text}");
}

/// `--series` imports the given DICOM instead of the synthetic studies and attaches it.
#[test]
fn demo_data_imports_given_series() {
    let dir = temp_dir();
    let series = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/series/ct-philips-headphantom-140");
    let out = Command::new(bin("appliance"))
        .current_dir(dir.path())
        .arg("demo-data")
        .arg("--series")
        .arg(&series)
        .env_remove("RUST_LOG")
        .output()
        .expect("appliance demo-data");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("stored 140"), "{text}");
    assert!(text.contains("studies attached: 1 and 0"), "{text}");
}
