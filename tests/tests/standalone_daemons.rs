//! `imaging` and `sfu` run on their own (for sites that give them their own machine): each
//! reads `--config FILE`, answers /healthz, /readyz (its own subsystem only) and /metrics on
//! its listener, and shuts down cleanly on SIGTERM.

use std::process::Command;
use std::time::Duration;

use e2e::{Daemon, Ports, bin, get, listening, temp_dir};

fn standalone(name: &str, port_key: &str) {
    let dir = temp_dir();
    let ports = Ports::free();
    let port = if port_key == "imaging_http" {
        ports.imaging_http
    } else {
        ports.sfu_signalling
    };
    let config = dir.path().join(format!("{name}.toml"));
    std::fs::write(&config, format!("[listeners]\n{port_key} = {port}\n")).expect("write config");
    let mut cmd = Command::new(bin(name));
    cmd.current_dir(dir.path()).arg("--config").arg(&config);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(port, "/healthz", Duration::from_secs(20));

    let ready = get(port, "/readyz").expect("readyz");
    assert_eq!(ready.status, 200);
    let subsystems = ready.json()["subsystems"]
        .as_object()
        .expect("object")
        .clone();
    assert_eq!(
        subsystems.keys().collect::<Vec<_>>(),
        vec![name],
        "{subsystems:?}"
    );
    let root = get(port, "/").expect("root").json();
    assert_eq!(root["service"], name);
    let metrics = get(port, "/metrics").expect("metrics");
    assert!(
        metrics
            .body
            .contains(&format!(r#"http_requests_total{{service="{name}""#)),
        "{}",
        metrics.body
    );
    assert!(
        !listening(ports.http),
        "{name} alone does not start the appliance listener"
    );

    d.signal("TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        d.stderr()
    );
    assert!(!listening(port));
}

#[test]
fn imaging_runs_alone() {
    standalone("imaging", "imaging_http");
}

#[test]
fn sfu_runs_alone() {
    standalone("sfu", "sfu_signalling");
}

#[test]
fn a_bad_config_file_stops_either_daemon() {
    let dir = temp_dir();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[imaging]\ngpu = \"sometimes\"\n").expect("write");
    for name in ["imaging", "sfu"] {
        let out = Command::new(bin(name))
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("imaging.gpu"),
            "{name}"
        );
    }
}
