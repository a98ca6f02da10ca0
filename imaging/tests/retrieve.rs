//! Pulling a study from a real PACS: dcmtk's dcmqrscp holds the 140-slice CT; imaging lists it
//! with C-FIND (`GET /pacs/PACS/studies`) and has it sent over with C-MOVE
//! (`POST /pacs/PACS/retrieve`), after which QIDO-RS shows all 140 instances here.

use std::process::Command;
use std::time::Duration;

use e2e::as_service::{get, request};
use e2e::{Daemon, Ports, bin, temp_dir};

#[test]
fn cfind_and_cmove_against_dcmqrscp() {
    let dir = temp_dir();
    let ports = Ports::free();
    let pacs_port = Ports::free().dicom;

    // The PACS: dcmqrscp with the series indexed in its database, knowing us as a move
    // destination.
    let db = dir.path().join("pacs");
    std::fs::create_dir_all(&db).unwrap();
    let files = e2e::ct_series_files();
    assert_eq!(files.len(), 140);
    let idx = Command::new("dcmqridx")
        .arg(&db)
        .args(&files)
        .output()
        .expect("run dcmqridx (scripts/test installs dcmtk)");
    assert!(
        idx.status.success(),
        "{}",
        String::from_utf8_lossy(&idx.stderr)
    );
    let cfg = dir.path().join("dcmqrscp.cfg");
    std::fs::write(
        &cfg,
        format!(
            "NetworkTCPPort = {pacs_port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\
             HostTable BEGIN\nappliance = (APPLIANCE, 127.0.0.1, {})\nHostTable END\n\
             VendorTable BEGIN\nVendorTable END\n\
             AETable BEGIN\nPACS {} RW (200, 1024mb) ANY\nAETable END\n",
            ports.dicom,
            db.display()
        ),
    )
    .unwrap();
    let mut pacs_cmd = Command::new("dcmqrscp");
    pacs_cmd.arg("-c").arg(&cfg);
    let _pacs = Daemon::spawn(pacs_cmd);
    e2e::wait_listening(pacs_port, "dcmqrscp");

    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir.path())
        .args(ports.args())
        .args(e2e::imaging_key_args())
        .args(["--set", "imaging.gpu=off"])
        .args([
            "--set",
            &format!("imaging.peers=[\"PACS@127.0.0.1:{pacs_port}\"]"),
        ]);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(30));
    let port = ports.imaging_http;

    let peers = get(port, "/pacs").unwrap().json();
    assert_eq!(peers[0]["ae_title"], "PACS");

    let studies = get(port, "/pacs/PACS/studies").unwrap();
    assert_eq!(studies.status, 200, "{}", studies.body);
    let studies = studies.json();
    assert_eq!(studies.as_array().unwrap().len(), 1, "{studies}");
    let uid = studies[0]["0020000D"]["Value"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let none = get(port, "/pacs/PACS/studies?PatientID=nobody").unwrap();
    assert_eq!(none.status, 200, "{}", none.body);
    assert_eq!(none.json().as_array().unwrap().len(), 0, "{}", none.body);
    let series = get(port, &format!("/pacs/PACS/studies/{uid}/series")).unwrap();
    assert_eq!(series.status, 200, "{}", series.body);
    assert_eq!(series.json()[0]["00080060"]["Value"][0], "CT");
    assert_eq!(get(port, "/pacs/NOPE/studies").unwrap().status, 404);

    // Nothing here yet; then C-MOVE brings the study.
    assert_eq!(
        get(port, "/dicomweb/instances").unwrap().json(),
        serde_json::json!([])
    );
    let body = format!("{{\"StudyInstanceUID\": \"{uid}\"}}");
    let moved = request(
        port,
        "POST",
        "/pacs/PACS/retrieve",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(moved.status, 200, "{}\n{}", moved.body, d.stderr());
    let outcome = moved.json();
    assert_eq!(outcome["completed"], 140, "{outcome}");
    assert_eq!(outcome["failed"], 0, "{outcome}");
    let here = get(port, "/dicomweb/instances").unwrap().json();
    assert_eq!(here.as_array().unwrap().len(), 140);
    assert_eq!(here[0]["0020000D"]["Value"][0], uid.as_str());

    let bad = request(
        port,
        "POST",
        "/pacs/PACS/retrieve",
        &[("Content-Type", "application/json")],
        b"{\"StudyInstanceUID\": \"../etc\"}",
    )
    .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
