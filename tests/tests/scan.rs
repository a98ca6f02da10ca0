//! A web vulnerability scan of the running stack, as an assessor runs one: Debian's wapiti
//! (injection, XSS, file, redirect, CRLF, command execution, headers, methods) and sqlmap
//! (SQL injection) against the API and pages over TLS, logged in, on the query parameters
//! people and systems send, bounded in time. No finding of medium severity or higher, no
//! server error, and no injectable parameter. The reports stay under the target directory
//! (`scan-reports/`) as the run's artifacts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::{Ports, bin, temp_dir};

fn reports() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("scan-reports");
    std::fs::create_dir_all(&dir).expect("reports folder");
    dir
}

/// wapiti against `base` with `header`, starting from `starts`; returns the JSON report.
fn wapiti(name: &str, base: &str, header: &str, starts: &[String]) -> serde_json::Value {
    let report = reports().join(format!("wapiti-{name}.json"));
    let mut cmd = Command::new("wapiti");
    cmd.args([
        "-u",
        base,
        "--scope",
        "domain",
        "--flush-session",
        "--verify-ssl",
        "0",
    ])
    .args([
        "-m",
        "sql,blindsql,xss,permanentxss,file,redirect,exec,crlf,http_headers,methods,csp",
    ])
    .args(["-H", header, "--max-scan-time", "120", "-f", "json", "-o"])
    .arg(&report);
    for s in starts {
        cmd.args(["-s", s]);
    }
    let out = cmd.output().expect("wapiti (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&report).expect("wapiti's report")).expect("JSON")
}

/// sqlmap on one URL with `header`; panics naming any injectable parameter.
fn sqlmap(name: &str, url: &str, header: &str) {
    let dir = reports().join(format!("sqlmap-{name}"));
    let out = Command::new("sqlmap")
        .args([
            "-u",
            url,
            "--headers",
            header,
            "--batch",
            "--level=2",
            "--risk=1",
        ])
        .args(["--flush-session", "--disable-coloring", "--output-dir"])
        .arg(&dir)
        .output()
        .expect("sqlmap (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(reports().join(format!("sqlmap-{name}.log")), &text).expect("log");
    assert!(
        text.contains("do not appear to be injectable")
            || text.contains("does not seem to be injectable"),
        "{name}: {text}"
    );
    assert!(!text.contains("is vulnerable"), "{name}: {text}");
    assert!(
        !text.contains("sqlmap identified the following injection point"),
        "{name}: {text}"
    );
}

#[test]
fn no_medium_or_high_finding_and_nothing_injectable() {
    let dir = temp_dir();
    let d = dir.path();
    let logins = e2e::api::demo_data(d);
    e2e::api::admin(d, &["tls", "init"]);
    let ports = Ports::free();
    let mut cmd = Command::new(bin("appliance"));
    cmd.current_dir(d).args(ports.args()).env_remove("RUST_LOG");
    let mut daemon = e2e::Daemon::spawn(cmd);
    daemon.wait_stdout("Ctrl-C", Duration::from_secs(60));
    // Logging in over TLS: curl with the local CA (the harness speaks plain HTTP).
    let ca = d.join("data/tls/ca.pem");
    let ca = ca.to_str().expect("path");
    let password = e2e::api::demo_password(&logins, "doctor.zhao");
    let app = format!("https://127.0.0.1:{}", ports.http);
    let curl_json = |path: &str, token: Option<&str>, body: serde_json::Value| {
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "--cacert",
            ca,
            "-H",
            "Content-Type: application/json",
        ]);
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let out = c
            .args(["-d", &body.to_string(), &format!("{app}{path}")])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let login = curl_json(
        "/api/v1/auth/login",
        None,
        serde_json::json!({ "login": "doctor.zhao", "password": password }),
    );
    let token = serde_json::from_str::<serde_json::Value>(&login).expect("login JSON")["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    curl_json(
        "/api/v1/auth/password",
        Some(&token),
        serde_json::json!({ "old_password": password, "new_password": "Consult-2026" }),
    );
    let session = format!("Authorization: Bearer {token}");
    let service = format!(
        "Authorization: Bearer {}",
        e2e::service_token(&e2e::stack_signer(&d.join("data")), false)
    );
    let imaging = format!("https://127.0.0.1:{}", ports.imaging_http);

    // The API's query parameters and the pages.
    let api_starts: Vec<String> = [
        "/centre/",
        "/api/v1/patients?q=wang",
        "/api/v1/icd10?q=I63",
        "/api/v1/consultations?state=draft&offset=0&limit=20",
        "/api/v1/referrals?state=requested",
        "/api/v1/statistics?from=2026-01-01&to=2026-12-31&group=institution",
        "/api/v1/experts?department=1",
    ]
    .iter()
    .map(|p| format!("{app}{p}"))
    .collect();
    let imaging_starts: Vec<String> = [
        "/dicomweb/studies?PatientName=WANG*&limit=10",
        "/dicomweb/series?Modality=CT",
        "/dicomweb/instances?limit=5&offset=0",
    ]
    .iter()
    .map(|p| format!("{imaging}{p}"))
    .collect();
    let mut findings = Vec::new();
    for (name, base, header, starts) in [
        ("appliance", &app, &session, &api_starts),
        ("imaging", &imaging, &service, &imaging_starts),
    ] {
        let report = wapiti(name, &format!("{base}/"), header, starts);
        for (category, list) in report["vulnerabilities"]
            .as_object()
            .expect("vulnerabilities")
        {
            for v in list.as_array().into_iter().flatten() {
                // wapiti's levels: 1 low, 2 medium, 3 high.
                if v["level"].as_i64().unwrap_or(3) >= 2 {
                    findings.push(format!("{name}: {category}: {v}"));
                }
            }
        }
        for (category, list) in report["anomalies"].as_object().expect("anomalies") {
            for v in list.as_array().into_iter().flatten() {
                findings.push(format!("{name}: anomaly {category}: {v}"));
            }
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
    for (name, url, header) in [
        (
            "patients",
            format!("{app}/api/v1/patients?q=wang"),
            &session,
        ),
        ("icd10", format!("{app}/api/v1/icd10?q=I63"), &session),
        (
            "consultations",
            format!("{app}/api/v1/consultations?state=draft"),
            &session,
        ),
        (
            "qido",
            format!("{imaging}/dicomweb/studies?PatientName=WANG*"),
            &service,
        ),
    ] {
        sqlmap(name, &url, header);
    }
    // The session still works: nothing the scan sent broke the account or the stack.
    let me = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            ca,
            "-H",
            &session,
            &format!("{app}/api/v1/me"),
        ])
        .output()
        .expect("curl");
    assert!(String::from_utf8_lossy(&me.stdout).contains("doctor.zhao"));
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)).code(), Some(0));
}
