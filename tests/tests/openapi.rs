//! The API against its own OpenAPI document, checked by schemathesis (PyPI; scripts/test
//! installs it): generated and boundary requests to every operation, as a logged-in doctor with
//! a patient and a consultation on record, must never get a 5xx, and every answer whose status
//! the document describes must match its schema. Logout and login are left out so the session
//! lasts the run.

use std::process::Command;
use std::time::Duration;

use e2e::api::{activate, admin, call, new_user};
use e2e::{Ports, get, temp_dir};
use serde_json::json;

#[test]
fn the_api_matches_its_openapi_document() {
    let dir = temp_dir();
    let d = dir.path();
    admin(d, &["institution", "add", "--name", "市第一人民医院"]);
    let doctor = new_user(d, "doc.one", "doctor", "1", "");
    let ports = Ports::free();
    let mut daemon = e2e::api::start(d, &ports, &[]);
    let port = ports.http;
    let token = activate(port, &doctor);
    let doc = get(port, "/api/v1/openapi.json").expect("the document");
    assert_eq!(doc.status, 200);
    assert_eq!(doc.json()["openapi"], "3.1.0");
    let patient = call(
        port,
        "POST",
        "/api/v1/patients",
        &token,
        &[],
        Some(json!({ "name": "吴九", "sex": "M", "birth_date": "1966-06-06" })),
    );
    assert_eq!(patient.status, 201);
    let c = call(
        port,
        "POST",
        "/api/v1/consultations",
        &token,
        &[],
        Some(json!({ "patient": patient.json()["id"], "kind": "remote", "mode": "appointment" })),
    );
    assert_eq!(c.status, 201);

    let python = std::env::var("APPLIANCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("http://127.0.0.1:{port}/api/v1/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-c", "not_a_server_error,response_schema_conformance"])
        .args([
            "-n",
            "30",
            "--phases",
            "coverage,fuzzing",
            "--seed",
            "20261126",
        ])
        .args(["--exclude-path", "/api/v1/auth/logout"])
        .args(["--exclude-path", "/api/v1/auth/login"])
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis (scripts/test installs it)");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every selected operation was tested (all but logout and login).
    let number = |label: &str| {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.trim().split('/').next()?.trim().parse::<usize>().ok())
    };
    let described: usize = doc.json()["paths"].as_object().map_or(0, |p| {
        p.values()
            .filter_map(|i| i.as_object())
            .map(|i| i.len())
            .sum()
    });
    assert_eq!(number("Selected:"), Some(described - 2), "{report}");
    assert_eq!(number("Tested:"), number("Selected:"), "{report}");
    // The session lasted the run: the fuzzing was authenticated.
    assert_eq!(
        call(port, "GET", "/api/v1/me", &token, &[], None).status,
        200
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
