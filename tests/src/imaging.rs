//! imaging for the tests that read images: pydicom scripts (the reference decoder), and a
//! store imported and served with the test viewer key.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{Daemon, Ports, bin, imaging_key_args};

/// Runs a Python script with `args` (pydicom and numpy: scripts/test installs them; the
/// interpreter is `APPLIANCE_PYTHON`, else python3); its standard output. The test fails, with
/// the script's standard error, when it does.
pub fn python<S: AsRef<OsStr>>(script: &str, args: impl IntoIterator<Item = S>) -> Vec<u8> {
    let python = std::env::var("APPLIANCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python3 (scripts/test installs pydicom)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Imports `inputs` (files or folders) into a store in `dir`, checks `stored` instances went
/// in, and starts imaging on it (CPU renderer, [`crate::test_signer`]'s viewer key): the daemon and
/// its HTTP port, ready.
pub fn serve_viewer<S: AsRef<OsStr>>(
    dir: &Path,
    inputs: impl IntoIterator<Item = S>,
    stored: usize,
) -> (Daemon, u16) {
    let import = Command::new(bin("imaging"))
        .current_dir(dir)
        .arg("import")
        .args(inputs)
        .output()
        .expect("imaging import");
    assert!(
        String::from_utf8_lossy(&import.stdout).starts_with(&format!("stored {stored}")),
        "{}{}",
        String::from_utf8_lossy(&import.stdout),
        String::from_utf8_lossy(&import.stderr)
    );
    let ports = Ports::free();
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir)
        .args(ports.args())
        .args(["--set", "imaging.gpu=off"])
        .args(imaging_key_args());
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(30));
    (d, ports.imaging_http)
}
