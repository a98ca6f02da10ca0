//! Orthanc (Debian's `orthanc` and `orthanc-dicomweb`, which scripts/test installs): the peer
//! PACS the ingest bench measures beside, and the clinic's cloud PACS the DICOMweb pull reads.

use std::process::Command;
use std::time::Duration;

use crate::{Daemon, Ports, temp_dir};

/// A running Orthanc with its DICOMweb plugin at `/dicom-web`, AE title ORTHANC, no
/// authentication, listening on loopback only.
#[derive(Debug)]
pub struct Orthanc {
    /// The process (stopped when dropped).
    pub daemon: Daemon,
    /// Its storage and index.
    pub dir: tempfile::TempDir,
    /// Its HTTP port (REST API and DICOMweb).
    pub http: u16,
    /// Its DICOM port.
    pub dicom: u16,
}

/// Starts Orthanc and waits until its REST API answers.
pub fn start() -> Orthanc {
    let dir = temp_dir();
    let ports = Ports::free();
    let config = dir.path().join("orthanc.json");
    let json = serde_json::json!({
        "Name": "e2e",
        "StorageDirectory": dir.path().join("storage"),
        "IndexDirectory": dir.path().join("index"),
        "HttpPort": ports.http,
        "DicomPort": ports.dicom,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": false,
        "AuthenticationEnabled": false,
        "DicomCheckCalledAet": false,
        "StorageCompression": false,
        // What Chinese sites set: names in UTF-8 survive QIDO-RS.
        "DefaultEncoding": "Utf8",
        "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
        "DicomWeb": { "Enable": true, "Root": "/dicom-web/" },
    });
    std::fs::write(&config, json.to_string()).expect("write Orthanc config");
    let mut cmd = Command::new("Orthanc");
    cmd.current_dir(dir.path()).arg(&config);
    let mut daemon = Daemon::spawn(cmd);
    daemon.wait_ok(ports.http, "/system", Duration::from_secs(60));
    Orthanc {
        daemon,
        dir,
        http: ports.http,
        dicom: ports.dicom,
    }
}
