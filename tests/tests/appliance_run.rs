//! `appliance run` as a real process: it starts on the embedded default and answers /healthz on
//! 127.0.0.1:8080, reports every subsystem in /readyz, exports Prometheus metrics, shuts down
//! cleanly on SIGTERM and Ctrl-C, and refuses to start on a bad configuration or a busy port.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use e2e::{Daemon, Ports, bin, get, listening, temp_dir};

fn appliance(dir: &std::path::Path, args: &[String]) -> Daemon {
    let mut cmd = Command::new(bin("appliance"));
    cmd.current_dir(dir).args(args).env_remove("RUST_LOG");
    Daemon::spawn(cmd)
}

/// The README's first command, with no arguments at all: defaults, ./data, loopback, port 8080.
#[test]
fn runs_on_the_embedded_default() {
    let dir = temp_dir();
    let mut d = appliance(dir.path(), &[]);
    let (health, at) = d.wait_ok(8080, "/healthz", Duration::from_secs(20));
    // How fast is measured by `benches --bin startup` (docs/PERFORMANCE.md); here, that it answers.
    println!(
        "appliance answered /healthz {:?} after start",
        at - d.started()
    );
    assert_eq!(health.body.trim(), "ok");

    let out = d.wait_stdout("Ctrl-C", Duration::from_secs(5));
    assert!(
        out.contains("http://127.0.0.1:8080/"),
        "prints the URL to open:\n{out}"
    );
    assert!(
        out.contains("http://127.0.0.1:8081/") && out.contains("http://127.0.0.1:8082/"),
        "{out}"
    );

    let ready = get(8080, "/readyz").expect("readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    let json = ready.json();
    for subsystem in ["appliance", "database", "render", "imaging", "dicom", "sfu"] {
        assert_eq!(json["subsystems"][subsystem]["state"], "ready", "{json}");
    }
    for port in [8081, 8082] {
        assert_eq!(get(port, "/healthz").expect("healthz").status, 200);
    }

    // The embedded default keeps its data in ./data, private to this user, with SQLite.
    let data = dir.path().join("data");
    assert!(data.join("appliance.db").is_file());
    let mode = std::fs::metadata(&data)
        .expect("data dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "data dir mode {mode:o}");

    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(15));
    assert_eq!(
        status.code(),
        Some(0),
        "graceful shutdown exits 0\nstderr:\n{}",
        d.stderr()
    );
    for port in [8080, 8081, 8082] {
        assert!(!listening(port), "port {port} still open after shutdown");
    }
    assert!(
        d.stderr().contains("SIGTERM"),
        "the shutdown is logged:\n{}",
        d.stderr()
    );
}

#[test]
fn metrics_are_prometheus_text_on_every_listener() {
    let dir = temp_dir();
    let ports = Ports::free();
    let mut d = appliance(dir.path(), &ports.args());
    d.wait_ok(ports.http, "/readyz", Duration::from_secs(20));
    for _ in 0..3 {
        assert_eq!(get(ports.http, "/healthz").expect("healthz").status, 200);
    }
    assert_eq!(get(ports.http, "/no/such/page").expect("404").status, 404);

    let m = get(ports.http, "/metrics").expect("metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        m.headers
    );
    // Every sample line is `name{labels} value` with a number for the value.
    for line in m
        .body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
        assert!(
            name.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_'),
            "bad name in {line}"
        );
    }
    let healthz = m
        .body
        .lines()
        .find(|l| l.starts_with(r#"http_requests_total{service="appliance",method="GET",route="/healthz",status="200"}"#))
        .unwrap_or_else(|| panic!("no healthz counter:\n{}", m.body));
    let count: f64 = healthz
        .rsplit_once(' ')
        .and_then(|(_, v)| v.parse().ok())
        .expect("count");
    assert!(count >= 3.0, "{healthz}");
    assert!(
        m.body.contains(r#"route="unmatched",status="404""#),
        "404s are counted without their path"
    );
    assert!(
        m.body
            .contains(r#"subsystem_ready{subsystem="database"} 1"#),
        "{}",
        m.body
    );

    for port in [ports.imaging_http, ports.sfu_signalling] {
        let m = get(port, "/metrics").expect("metrics");
        assert_eq!(m.status, 200);
        assert!(
            m.body.contains("# TYPE http_requests_total counter"),
            "{}",
            m.body
        );
    }
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[test]
fn ctrl_c_is_graceful_too() {
    let dir = temp_dir();
    let ports = Ports::free();
    let mut d = appliance(dir.path(), &ports.args());
    d.wait_ok(ports.http, "/readyz", Duration::from_secs(20));
    d.signal("INT");
    assert_eq!(
        d.wait_exit(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        d.stderr()
    );
    assert!(!listening(ports.http));
}

#[test]
fn an_invalid_configuration_refuses_to_start() {
    let dir = temp_dir();
    let mut args = Ports::free().args();
    args.extend([
        "--set".into(),
        "listeners.http=70000".into(),
        "--set".into(),
        "sfu.max_rooms=0".into(),
    ]);
    let mut d = appliance(dir.path(), &args);
    let status = d.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(2));
    let err = d.stderr();
    assert!(
        err.contains("listeners.http") && err.contains("out of range"),
        "{err}"
    );
    assert!(err.contains("sfu.max_rooms"), "every error at once: {err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing written for a refused start"
    );
}

#[test]
fn a_busy_port_is_named_and_the_stack_stops() {
    let dir = temp_dir();
    // Another process may take a port between `Ports::free` and this bind (a client's
    // ephemeral port): draw again rather than fail.
    let (ports, busy) = (0..10)
        .find_map(|_| {
            let ports = Ports::free();
            std::net::TcpListener::bind(("127.0.0.1", ports.imaging_http))
                .ok()
                .map(|busy| (ports, busy))
        })
        .expect("occupy a port");
    let mut d = appliance(dir.path(), &ports.args());
    let status = d.wait_exit(Duration::from_secs(15));
    drop(busy);
    assert_eq!(status.code(), Some(1));
    let err = d.stderr();
    assert!(err.contains("listeners.imaging_http"), "{err}");
    assert!(!listening(ports.http), "the rest of the stack stopped too");
}

#[test]
fn rust_log_and_json_logs() {
    let dir = temp_dir();
    let ports = Ports::free();
    let mut args = ports.args();
    args.extend(["--log-format".into(), "json".into()]);
    let mut cmd = Command::new(bin("appliance"));
    cmd.current_dir(dir.path())
        .args(&args)
        .env("RUST_LOG", "debug");
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.http, "/readyz", Duration::from_secs(20));
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let err = d.stderr();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "listening" && l["service"] == "imaging"),
        "{err}"
    );
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"),
        "RUST_LOG=debug lets debug lines through"
    );

    let mut cmd = Command::new(bin("appliance"));
    cmd.current_dir(dir.path())
        .args(ports.args())
        .env("RUST_LOG", "warn");
    let mut d = Daemon::spawn(cmd);
    d.wait_ok(ports.http, "/readyz", Duration::from_secs(20));
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert!(
        !d.stderr().contains("listening"),
        "RUST_LOG=warn hides info lines:\n{}",
        d.stderr()
    );
}

/// A request in flight when SIGTERM arrives is answered; new connections are refused from then
/// on; the process exits 0 once the request is done.
#[test]
fn sigterm_finishes_requests_in_flight() {
    use std::io::{Read, Write};
    let dir = temp_dir();
    let ports = Ports::free();
    let mut d = appliance(dir.path(), &ports.args());
    d.wait_ok(ports.http, "/readyz", Duration::from_secs(20));

    let mut conn = std::net::TcpStream::connect(("127.0.0.1", ports.http)).expect("connect");
    conn.write_all(b"GET /api/v1 HTTP/1.1\r\nHost: appliance\r\n")
        .expect("half a request");
    std::thread::sleep(Duration::from_millis(100));
    d.signal("TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while listening(ports.http) {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(d.stderr().contains("SIGTERM"));

    conn.write_all(b"\r\n").expect("rest of the request");
    let mut response = String::new();
    conn.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"service\":\"appliance\""), "{response}");
    assert_eq!(
        d.wait_exit(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        d.stderr()
    );
}
