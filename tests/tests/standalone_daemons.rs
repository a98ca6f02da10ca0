//! `imaging` and `sfu` run on their own (for sites that give them their own machine): each
//! reads `--config FILE`, answers /healthz, /readyz (its own subsystems only) and /metrics on
//! its listener, and shuts down cleanly on SIGTERM. imaging renders on the backend
//! `imaging.gpu` names: `on` uses the GPU (lavapipe here), `off` the CPU, `auto` a real GPU
//! only, and `on` without any GPU stops it with the reason.

use std::process::Command;
use std::time::Duration;

use e2e::{Daemon, Ports, bin, get, listening, temp_dir};

fn standalone(name: &str, port_key: &str, subsystems_expected: &[&str]) {
    let dir = temp_dir();
    let ports = Ports::free();
    let port = if port_key == "imaging_http" {
        ports.imaging_http
    } else {
        ports.sfu_signalling
    };
    let config = dir.path().join(format!("{name}.toml"));
    // The DICOM port too: other tests run imaging at the same time.
    std::fs::write(
        &config,
        format!(
            "[listeners]\n{port_key} = {port}\ndicom = {}\n",
            ports.dicom
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(bin(name));
    cmd.current_dir(dir.path()).arg("--config").arg(&config);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(port, "/healthz", Duration::from_secs(20));
    // Live first; ready once every subsystem (the DICOM listener binds beside HTTP) is.
    let (ready, _) = d.wait_ok(port, "/readyz", Duration::from_secs(20));
    assert_eq!(ready.status, 200);
    let subsystems = ready.json()["subsystems"]
        .as_object()
        .expect("object")
        .clone();
    assert_eq!(
        subsystems.keys().map(String::as_str).collect::<Vec<_>>(),
        subsystems_expected,
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
    standalone("imaging", "imaging_http", &["dicom", "imaging", "render"]);
}

#[test]
fn sfu_runs_alone() {
    standalone("sfu", "sfu_signalling", &["sfu"]);
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

fn imaging_with_gpu(dir: &tempfile::TempDir, setting: &str, env: &[(&str, &str)]) -> (Daemon, u16) {
    let ports = Ports::free();
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir.path())
        .args(ports.args())
        .args(["--set", &format!("imaging.gpu={setting}")]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    (Daemon::spawn(cmd), ports.imaging_http)
}

#[test]
fn imaging_gpu_setting_picks_the_renderer() {
    for (setting, backend) in [("on", "gpu"), ("off", "cpu"), ("auto", "cpu")] {
        let dir = temp_dir();
        let (mut d, port) = imaging_with_gpu(&dir, setting, &[]);
        d.wait_ok(port, "/readyz", Duration::from_secs(60));
        let root = get(port, "/").expect("root").json();
        // On this machine the only Vulkan device is lavapipe, a CPU rasteriser: `auto` does not
        // count it as a GPU; `on` uses it.
        assert_eq!(
            root["render"]["backend"], backend,
            "imaging.gpu={setting}: {root}"
        );
        if backend == "gpu" {
            assert!(
                root["render"]["adapter"]
                    .as_str()
                    .is_some_and(|a| !a.is_empty()),
                "{root}"
            );
            let metrics = get(port, "/metrics").expect("metrics").body;
            assert!(metrics.contains("render_gpu{adapter="), "{metrics}");
        }
        d.signal("TERM");
        assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
    }
}

#[test]
fn imaging_gpu_on_without_a_gpu_refuses_to_start() {
    // A backend this build does not have: no adapter can be found.
    let dir = temp_dir();
    let (mut d, _) = imaging_with_gpu(&dir, "on", &[("WGPU_BACKEND", "dx12")]);
    let status = d.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(1));
    assert!(d.stderr().contains("imaging.gpu = on"), "{}", d.stderr());
}

#[test]
fn imaging_render_threads_sizes_the_pool() {
    let dir = temp_dir();
    let ports = Ports::free();
    let mut cmd = Command::new(bin("imaging"));
    cmd.current_dir(dir.path()).args(ports.args()).args([
        "--set",
        "imaging.render_threads=3",
        "--set",
        "imaging.gpu=off",
    ]);
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.imaging_http, "/readyz", Duration::from_secs(30));
    let metrics = get(ports.imaging_http, "/metrics").expect("metrics").body;
    assert!(
        metrics.lines().any(|l| l == "render_threads 3"),
        "{metrics}"
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
}
