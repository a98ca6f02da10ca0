//! The DICOM listener with dcmtk's echoscu as the peer: C-ECHO to our AE title succeeds for a
//! listed caller; a wrong called AE title, an unlisted calling AE title, or a listed one from
//! the wrong address gets an association reject that says which.

use std::process::Command;
use std::time::Duration;

use e2e::{Daemon, Ports, bin, temp_dir};

fn imaging(allowed: &str) -> (Daemon, Ports, tempfile::TempDir) {
    let dir = temp_dir();
    let ports = Ports::free();
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir.path()).args(ports.args()).args([
        "--set",
        &format!("imaging.allowed_callers={allowed}"),
        "--set",
        "imaging.gpu=off",
    ]);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(30));
    (d, ports, dir)
}

fn echoscu(port: u16, calling: &str, called: &str) -> (bool, String) {
    let out = Command::new("echoscu")
        .args([
            "-v",
            "-aet",
            calling,
            "-aec",
            called,
            "127.0.0.1",
            &port.to_string(),
        ])
        .output()
        .expect("run echoscu (scripts/test installs dcmtk)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn listed_callers_are_answered_and_others_rejected() {
    let (mut d, ports, _dir) = imaging(r#"["ECHOSCU", "CT1@127.0.0.1", "MR1@10.9.9.9"]"#);
    let (ok, log) = echoscu(ports.dicom, "ECHOSCU", "APPLIANCE");
    assert!(ok, "C-ECHO from a listed caller:\n{log}");
    assert!(log.contains("Received Echo Response (Success)"), "{log}");
    let (ok, log) = echoscu(ports.dicom, "CT1", "APPLIANCE");
    assert!(ok, "listed with this address:\n{log}");

    let (ok, log) = echoscu(ports.dicom, "ECHOSCU", "SOMEONE-ELSE");
    assert!(
        !ok && log.contains("Called AE Title Not Recognized"),
        "{log}"
    );
    let (ok, log) = echoscu(ports.dicom, "STRANGER", "APPLIANCE");
    assert!(
        !ok && log.contains("Calling AE Title Not Recognized"),
        "{log}"
    );
    let (ok, log) = echoscu(ports.dicom, "MR1", "APPLIANCE");
    assert!(
        !ok && log.contains("Calling AE Title Not Recognized"),
        "listed for another address:\n{log}"
    );

    // Still serving after the rejects; then a clean shutdown closes the DICOM port too.
    assert!(echoscu(ports.dicom, "ECHOSCU", "APPLIANCE").0);
    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        d.stderr()
    );
    assert!(!e2e::listening(ports.dicom));
}

#[test]
fn an_empty_list_accepts_any_caller_on_loopback() {
    let (mut d, ports, _dir) = imaging("[]");
    let (ok, log) = echoscu(ports.dicom, "ANYONE", "APPLIANCE");
    assert!(ok, "{log}");
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
}
